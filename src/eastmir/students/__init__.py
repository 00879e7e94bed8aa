"""Student networks. Each registers itself in :data:`eastmir.registry.STUDENTS`
and follows :class:`eastmir.students.base.Student`."""

from eastmir.students import linear_probe, mobile_fcn  # noqa: F401  (registers them)
