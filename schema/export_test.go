package schema

// SchemaFile exposes an embedded schema file, such as defs, to the tests.
func SchemaFile(name string) ([]byte, error) { return files.ReadFile("json/" + name + ".json") }
