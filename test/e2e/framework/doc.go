// Package framework runs the real skiff binary for end-to-end tests: it
// builds the binary, starts and restarts `skiff server` on loopback ports,
// runs stock kubectl binaries against it and starts an external etcd.
package framework
