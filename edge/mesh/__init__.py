"""The only part of the edge that speaks to the mesh: channels, the typed calls the surfaces make, the
conversions to and from protobuf and the tool-call assembly. Nothing outside this package imports generated
protobuf code."""
