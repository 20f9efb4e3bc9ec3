package server

import "runtime"

func goVersion() string { return runtime.Version() }
