"""Device adapters (the I/O edge): byte pipes and Modbus clients that turn hardware into gate
events and gate actions into coil writes. Each one reports itself offline when it loses its
device and reconnects with back-off; the pure core never sees a socket."""
