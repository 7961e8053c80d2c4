"""callkeeper: keeps Microsoft Graph calls of calling and meeting bots alive."""

__version__ = "0.1.0"
