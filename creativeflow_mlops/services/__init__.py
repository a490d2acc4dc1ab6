"""The service layer: what the models and the controllers share. It works on
records it is given and calls the plain-Python adapters below it."""
