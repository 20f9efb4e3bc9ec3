// Package agent is skiff's node agent (the kubelet's role): it registers a
// Node, keeps it alive with a Lease and status conditions, watches the pods
// bound to the node, runs them through a Runtime and reports their status
// the way upstream's kubelet does.
//
// The flow for one pod is:
//
//	API watch → PodSource (one informer, shared by every agent in the
//	process) → work queue keyed by node and pod → Agent.syncPod →
//	Runtime.SyncPod / Runtime.KillPod → podStatus (pure) → PATCH pods/status
//	→ on deletion: DELETE with gracePeriodSeconds=0 and a UID precondition.
//
// The container runtime is behind the Runtime interface declared here; the
// simulated runtime lives in package agent/sim and the CRI runtime will
// implement the same interface.
package agent
