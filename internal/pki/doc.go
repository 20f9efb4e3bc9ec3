// Package pki creates and loads the cluster's certificate authority,
// serving and client certificates.
//
// Files are written atomically (temporary file, fsync, rename), so a crash
// never leaves half a CA or a certificate that does not match its key.
package pki
