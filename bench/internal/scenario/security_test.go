package scenario

import (
	"os"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestSecurityValidate(t *testing.T) {
	for _, tok := range []string{"", AuthSimple, AuthJWT} {
		if err := (Security{Auth: true, AuthToken: tok}).Validate(); err != nil {
			t.Errorf("token %q: %v", tok, err)
		}
	}
	if err := (Security{Auth: true, AuthToken: "oauth"}).Validate(); err == nil {
		t.Error("an unknown token kind is accepted")
	}
}

func TestSecurityPrepareFiles(t *testing.T) {
	dir := t.TempDir()
	tt, args, err := Security{}.prepareFiles(dir)
	if err != nil || tt != nil || len(args) != 0 {
		t.Errorf("plain: %v, %v, %v; want nothing", tt, args, err)
	}
	tt, args, err = Security{TLS: true, Auth: true, AuthToken: AuthJWT}.prepareFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tt == nil || tt.ClientCommonName != benchUser {
		t.Errorf("TLS: %+v, want certificates with client CN %s", tt, benchUser)
	}
	if len(args) != 2 || args[0] != "--auth-token" {
		t.Fatalf("jwt args %v", args)
	}
	// The keys must be what the servers' JWT library reads for ES256.
	opts := map[string]string{}
	for _, kv := range strings.Split(args[1], ",")[1:] {
		k, v, _ := strings.Cut(kv, "=")
		opts[k] = v
	}
	if opts["sign-method"] != "ES256" {
		t.Errorf("sign-method %q", opts["sign-method"])
	}
	pub, err := os.ReadFile(opts["pub-key"])
	if err != nil {
		t.Fatal(err)
	}
	priv, err := os.ReadFile(opts["priv-key"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.ParseECPublicKeyFromPEM(pub); err != nil {
		t.Errorf("public key: %v", err)
	}
	if _, err := jwt.ParseECPrivateKeyFromPEM(priv); err != nil {
		t.Errorf("private key: %v", err)
	}
}
