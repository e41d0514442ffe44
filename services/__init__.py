"""ingot's gRPC services, one package each; they share code only through ingot.common."""
