// Package plugins holds the scheduler's filter and score plugins, one file
// per plugin, and builds a framework.Profile from configuration. Reason
// strings match kube-scheduler's so that events read the same.
package plugins
