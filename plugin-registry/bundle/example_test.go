package bundle_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/keelhq/keel/plugin-registry/bundle"
)

// A publisher builds and signs a bundle; a host reads it, trusting the publisher's key.
func Example() {
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		panic(err)
	}
	b, err := bundle.Build(
		[]byte(`{"name":"hello","version":"1.0.0","abi":1,"routes":[{"method":"GET","path":"/hi","public":true}]}`),
		[]byte("\x00asm\x01\x00\x00\x00"), // a real module comes from GOOS=wasip1 go build
		map[string][]byte{"0001_greetings.sql": []byte("CREATE TABLE greetings (text text);")},
	)
	if err != nil {
		panic(err)
	}
	if err := b.Sign(priv); err != nil {
		panic(err)
	}
	var file bytes.Buffer // in real life, a hello-1.0.0.keel file or an upload
	if _, err := b.WriteTo(&file); err != nil {
		panic(err)
	}

	got, err := bundle.Read(&file, bundle.ReadOptions{TrustedKeys: []ed25519.PublicKey{pub}})
	if err != nil {
		panic(err)
	}
	m := got.Manifest()
	fmt.Println(m.Name, m.Version, "signed:", got.Signed(), "by the publisher:", got.Signer() == bundle.KeyID(pub))
	for _, mig := range got.Migrations() {
		fmt.Println(mig.Name)
	}
	// Output:
	// hello 1.0.0 signed: true by the publisher: true
	// 0001_greetings.sql
}

// A production host refuses unsigned bundles; a development host may allow them.
func ExampleRead_unsigned() {
	b, err := bundle.Build([]byte(`{"name":"hello","version":"1.0.0","abi":1}`), []byte("\x00asm\x01\x00\x00\x00"), nil)
	if err != nil {
		panic(err)
	}
	var file bytes.Buffer
	if _, err := b.WriteTo(&file); err != nil {
		panic(err)
	}
	data := file.Bytes()

	_, err = bundle.Read(bytes.NewReader(data), bundle.ReadOptions{})
	fmt.Println("production:", errors.Is(err, bundle.ErrUnsigned))

	dev, err := bundle.Read(bytes.NewReader(data), bundle.ReadOptions{AllowUnsigned: true})
	fmt.Println("development:", err == nil, dev.Signed())
	// Output:
	// production: true
	// development: true false
}
