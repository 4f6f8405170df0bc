from vans_training.models.alignment import VideoCaptionAligner

__all__ = ["VideoCaptionAligner"]
