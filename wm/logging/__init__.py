from wm.logging.logger import Logger, LoggerConfig

__all__ = ["Logger", "LoggerConfig"]
