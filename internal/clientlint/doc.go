// Package clientlint holds checks on the code of varwatch's clients (the
// Go client, the CLI, the Python client) that no compiler makes. Its one
// check today, in its test: the clients decide what an error means by its
// status code and its ErrorInfo reason and metadata, never by matching
// the text of the message, so that the server's messages stay free to
// improve (README "Error codes").
package clientlint
