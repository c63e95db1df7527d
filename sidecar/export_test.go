package sidecar

// CopyBuffers lends the benchmark's bare proxy the sidecar's buffer pool, so that the
// baseline differs from the sidecar only by authorization.
var CopyBuffers = copyBuffers
