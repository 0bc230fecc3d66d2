package problem

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// unknownField returns the path of the first member of the JSON value in
// data that v's type has no field for, such as "source_vm.idd" or
// "disks[1].sise", in the order encoding/json meets them; "" when it finds
// none. encoding/json names only the member ("idd"), not where it is.
func unknownField(data []byte, v any) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	path, _ := firstUnknown(dec, reflect.TypeOf(v), "")
	return path
}

// firstUnknown reads one value from dec, checking it against t (nil:
// anything), and returns the path of the first unknown member.
func firstUnknown(dec *json.Decoder, t reflect.Type, path string) (string, error) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	switch tok {
	case json.Delim('{'):
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return "", err
			}
			name, _ := key.(string)
			member := name
			if path != "" {
				member = path + "." + name
			}
			var mt reflect.Type
			switch {
			case t == nil:
			case t.Kind() == reflect.Struct:
				ft, ok := fieldType(t, name)
				if !ok {
					return member, nil
				}
				mt = ft
			case t.Kind() == reflect.Map:
				mt = t.Elem()
			}
			if p, err := firstUnknown(dec, mt, member); p != "" || err != nil {
				return p, err
			}
		}
		_, err = dec.Token() // '}'
		return "", err
	case json.Delim('['):
		var et reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			et = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if p, err := firstUnknown(dec, et, path+"["+strconv.Itoa(i)+"]"); p != "" || err != nil {
				return p, err
			}
		}
		_, err = dec.Token() // ']'
		return "", err
	}
	return "", nil
}

// fieldType returns the type of the field of struct t that encoding/json
// decodes member name into: by its JSON name, exactly or else ignoring
// case, embedded structs' fields included.
func fieldType(t reflect.Type, name string) (reflect.Type, bool) {
	var folded reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		ft := f.Type
		if f.Anonymous && tag == "" {
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if et, ok := fieldType(ft, name); ok {
					return et, true
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if tag == name {
			return ft, true
		}
		if folded == nil && strings.EqualFold(tag, name) {
			folded = ft
		}
	}
	return folded, folded != nil
}
