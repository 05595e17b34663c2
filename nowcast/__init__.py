"""nowcast: precipitation nowcasting from weather radar with MotionRNN."""

__version__ = "0.1.0"
