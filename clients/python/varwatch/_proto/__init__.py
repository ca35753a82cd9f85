"""Generated protobuf and gRPC stubs (see scripts/genproto.sh)."""
