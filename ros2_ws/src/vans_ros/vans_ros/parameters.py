"""Declared, described and validated node parameters, from one table per node.

Each node lists its parameters as :class:`ParameterSpec` rows. :func:`declare_and_check` declares
them all with a ``ParameterDescriptor`` (description, allowed values) and checks every value before
the node builds anything, raising :class:`ParameterError` that names the parameter, the rule and the
value given. :func:`help_text` prints the same table for ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rcl_interfaces.msg import ParameterDescriptor


class ParameterError(ValueError):
    """A parameter value that the node cannot start with."""


@dataclass(frozen=True)
class ParameterSpec:
    """Args:
        name (`str`): the parameter name.
        default: its default; the type of the default is the parameter's type.
        description (`str`): what it holds, shown by ``--help`` and ``ros2 param describe``.
        check (`Callable[[Any], bool]`, *optional*): True for an allowed value.
        rule (`str`, *optional*): the allowed values in words, quoted in errors.
        choices (`tuple`, *optional*): the allowed values, when they are a list.
    """

    name: str
    default: Any
    description: str
    check: Callable[[Any], bool] | None = None
    rule: str = ""
    choices: tuple = ()

    def validate(self, value: Any) -> Any:
        if self.choices and value not in self.choices:
            raise ParameterError(f"parameter {self.name!r} must be one of {list(self.choices)}, got {value!r}")
        if self.check is not None and not self.check(value):
            raise ParameterError(f"parameter {self.name!r} must be {self.rule}, got {value!r}")
        return value

    @property
    def constraints(self) -> str:
        return f"one of {list(self.choices)}" if self.choices else self.rule


def declare_and_check(node, specs: list[ParameterSpec]) -> dict[str, Any]:
    """Declare every parameter on ``node`` and return their checked values by name."""
    values = {}
    for spec in specs:
        descriptor = ParameterDescriptor(description=spec.description, additional_constraints=spec.constraints,
                                         read_only=True)
        try:
            value = node.declare_parameter(spec.name, spec.default, descriptor).value
        except Exception as e:  # rclpy raises a type error of its own for a value of the wrong type
            raise ParameterError(f"parameter {spec.name!r}: {e}") from e
        values[spec.name] = spec.validate(value)
    return values


def help_text(executable: str, specs: list[ParameterSpec]) -> str:
    lines = [f"usage: {executable} [--ros-args --params-file FILE] [--ros-args -p NAME:=VALUE ...]", "",
             "parameters:"]
    for spec in specs:
        allowed = f" [{spec.constraints}]" if spec.constraints else ""
        lines.append(f"  {spec.name} (default {spec.default!r}){allowed}\n      {spec.description}")
    return "\n".join(lines)


def positive(value) -> bool:
    return value > 0


def non_negative(value) -> bool:
    return value >= 0
