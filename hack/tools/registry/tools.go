//go:build tools

// Package tools pins CNCF Distribution's registry binary at the version in go.mod.
package tools

import (
	_ "github.com/distribution/distribution/v3/cmd/registry"
)
