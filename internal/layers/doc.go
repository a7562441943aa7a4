// Package layers encodes the architecture's layering as rules over Go import paths and checks a
// source tree against them. The rules are the table of ARCHITECTURE.md and STYLE.md's
// boundaries: vfs imports no protocol, no pipeline, fixer, store, daemon or command, no bbolt,
// no exec, and go-fuse only in its FUSE front end; nothing imports cmd; Linux and Windows fixers
// never import each other; non-test code does not import test helpers.
//
// The check reads import clauses with go/parser (nothing is built), so it runs on fixture trees
// that do not compile as well. TestRepositoryLayers runs it on this repository in `make test`.
package layers
