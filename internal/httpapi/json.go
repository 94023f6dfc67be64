package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"
)

// jsonContentType is shared by every JSON response: assigning the slice
// directly avoids an allocation per response. Nothing appends to it.
var jsonContentType = []string{"application/json"}

// writeJSON answers status with v encoded as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only a bug gets here (every response type is marshalable).
		status = http.StatusInternalServerError
		b = []byte(`{"error":"` + msgInternal + `"}`)
	}
	writeJSONBytes(w, status, b)
}

// writeJSONBytes answers status with b, an already encoded JSON value.
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// decodeJSON decodes the request body, a JSON object, into dst (a pointer to
// a struct). An empty body decodes as {} (dst is left as it is). Every
// refusal is a 400 with a message for humans, or the *http.MaxBytesError of
// an oversized body (413):
//   - a body with a Content-Type other than JSON;
//   - invalid UTF-8 (encoding/json would silently replace it);
//   - anything but a single JSON object: arrays, scalars, null, trailing data;
//   - duplicate member names (see checkJSON);
//   - a member of the wrong type, named in the message.
//
// Unknown members are ignored: OffChat frontends send extras.
func decodeJSON(r *http.Request, dst any) error {
	if r.ContentLength == 0 {
		return nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("Could not read the request body")
	}
	body = bytes.TrimLeft(body, " \t\r\n")
	if len(body) == 0 {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
			return badRequest("Content-Type must be application/json")
		}
	}
	if !utf8.Valid(body) {
		return badRequest("Request body is not valid UTF-8")
	}
	if body[0] != '{' {
		return badRequest("Request body must be a JSON object")
	}
	if err := checkJSON(body); err != nil {
		return err
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return decodeError(err)
	}
	return nil
}

// checkJSON checks that body holds exactly one JSON value and that no object
// in it has two members whose names encoding/json would match to the same
// field. Duplicate keys let two parsers disagree about a value (one takes
// the first, another the last): a proxy or audit log could see a different
// request than we do, so they are refused. Names are compared as
// encoding/json matches them to struct fields, case-insensitively (with
// Unicode simple folding: "ſ" matches "s").
func checkJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // no float parsing: only the structure matters here
	type frame struct {
		keys      map[string]bool // nil for arrays
		expectKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return badRequest("Request body is not valid JSON")
		}
		if name, ok := tok.(string); ok && len(stack) > 0 {
			if f := stack[len(stack)-1]; f.keys != nil && f.expectKey {
				folded := foldName(name)
				if f.keys[folded] {
					return badRequest(fmt.Sprintf("Duplicate member %q in the request body", name))
				}
				f.keys[folded] = true
				f.expectKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, expectKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: the enclosing object expects a name next.
		if len(stack) > 0 && stack[len(stack)-1].keys != nil {
			stack[len(stack)-1].expectKey = true
		}
		if len(stack) == 0 {
			// The top-level object is complete; only whitespace may follow.
			if _, err := dec.Token(); err != io.EOF {
				return badRequest("Request body must hold a single JSON object")
			}
			return nil
		}
	}
}

// foldName folds a member name as encoding/json does when it matches names
// to fields.
func foldName(name string) string {
	return strings.Map(func(r rune) rune { return unicode.ToUpper(unicode.ToLower(r)) }, name)
}

// decodeError turns an encoding/json error into a 400 that names the field.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "request body"
		}
		// For an element of an array, Field names the array and Type is
		// the element's: "ids: want an integer, got string".
		return badRequest(fmt.Sprintf("%s: want %s, got %s", field, jsonKind(te.Type), te.Value))
	}
	return badRequest("Request body is not valid JSON")
}

// jsonKind names the JSON type that t decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// appendJSON appends v encoded as JSON. v must be one of the response types,
// which always encode; failing to is a bug.
func appendJSON(b []byte, v any) []byte {
	enc, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("httpapi: encode %T: %v", v, err))
	}
	return append(b, enc...)
}
