"""The small module every ingot process shares: settings, the error family, gRPC server wiring, logging.

Services and the edge share code only through here; they never import each other.
"""
