"""The kafka admin service: creates every registry topic and reports the broker's health."""
