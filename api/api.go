// Package api holds the contract of presenced's HTTP API: openapi.yaml, an
// OpenAPI 3.0.3 document that the frontend and the conformance tests are
// built from. The document is embedded so that tests and tools use exactly
// the file in the repository, never a copy that could drift.
package api

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"
)

//go:embed openapi.yaml
var spec []byte

// OpenAPI returns the YAML text of the OpenAPI document. Each call returns a
// fresh copy, so callers may modify it without affecting anyone else.
func OpenAPI() []byte { return bytes.Clone(spec) }

// Load parses and validates the OpenAPI document with kin-openapi. Each call
// returns a new *openapi3.T that the caller owns (for example to build an
// openapi3filter router). External references are not followed: the
// document is self-contained.
func Load(ctx context.Context) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	doc, err := loader.LoadFromData(OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("api: parse openapi.yaml: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("api: validate openapi.yaml: %w", err)
	}
	return doc, nil
}
