"""Code every service of the fleet shares: settings, events, bus, storage, auth, logging, HTTP."""
