"""The daemon: audio source -> sliding windows -> caption engine -> events -> ZeroMQ publisher."""
