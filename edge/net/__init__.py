"""Network plumbing shared by sources and the simulator (MQTT client set-up)."""
