"""Student networks. Each registers itself in :data:`eastmir.registry.STUDENTS`
and follows :class:`eastmir.students.base.Student`."""

from eastmir.students import cp_resnet, harmonic_cnn, linear_probe, mobile_fcn, short_chunk_cnn  # noqa: F401
