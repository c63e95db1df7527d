// Package replay remembers what may be used only once: the jti of a single-use access
// token, the jti of a DPoP proof. A Store answers one question atomically, "is this the
// first use of key?", and remembers the key until a time after which a second use
// would be refused for other reasons anyway (the token or the proof has expired).
//
// Memory is the store of one process: right for one replica only, since another
// replica does not see its records. Several replicas share a Redis store
// (replay/redisstore). A store that cannot answer returns an error, and its caller
// refuses the request: a replay check that fails open is no check.
package replay
