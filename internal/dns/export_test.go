package dns

import "testing"

// StartServer runs a server on a free loopback port until the test ends
// (for the external integration test).
func StartServer(t *testing.T, cfg Config) *Server { return startServer(t, cfg) }
