"""Plain-Python adapters below the service layer: no ORM, explicit inputs,
timeouts everywhere."""
