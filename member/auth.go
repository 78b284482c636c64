package member

import (
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/auth"
)

// maxAuthenticateAttempts bounds how often Authenticate proposes again
// because the auth revision moved between the password check and the
// apply. etcd retries until the request times out; keel gives up with the
// same error after this many attempts.
const maxAuthenticateAttempts = 16

// loadAuth opens the auth store kept in the member's database, with the
// token and hashing settings of cfg. A bad --auth-token fails here.
func (m *Member) loadAuth() (*auth.Store, error) {
	return auth.Load(m.engine.DB(), auth.Options{
		Token:       m.cfg.AuthToken,
		TokenTTL:    m.cfg.AuthTokenTTL,
		BcryptCost:  m.cfg.BcryptCost,
		WaitApplied: m.waitTokenEntry,
		Now:         m.cfg.AuthClock,
		Logger:      m.lg,
	})
}

// errTokenIndexNotCommitted refuses a simple token that names an entry past
// the committed index.
var errTokenIndexNotCommitted = errors.New("the token's entry is not committed")

// waitTokenEntry waits, at most the request timeout, until the entry at
// index that issued a simple token is applied. An index past the committed
// index this member knows of is either made up or the entry of a token
// issued through another member a moment ago, whose commit has not reached
// this one yet: one linearizable read (a ReadIndex round, shared with
// concurrent reads) brings this member up to the leader's commit index, and
// an index still past it is refused rather than waited for.
func (m *Member) waitTokenEntry(ctx context.Context, index uint64) error {
	if index <= m.applied.Load() {
		// The common case, on every request with a token: no timer.
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	if index <= m.raft.CommittedIndex() {
		return m.waitApplied(cctx, index)
	}
	if err := m.linearizableReadNotify(cctx); err != nil {
		return err
	}
	if index > m.applied.Load() {
		return errTokenIndexNotCommitted
	}
	return nil
}

// Auth returns the member's auth store: permission checks and the
// resolution of tokens and certificate names into identities.
func (m *Member) Auth() *auth.Store { return m.auth }

// AuthRequest proposes an Auth service request r (any of the
// InternalRaftRequest auth fields but Authenticate) on behalf of ai (nil:
// nobody) and returns its response once applied. Passwords are hashed here,
// before proposing, so that the Raft log holds no clear password. Whether
// ai may make the request (the root role, as etcd requires) is decided when
// the entry is applied; a request carrying a password is also checked
// before it is hashed, so that no caller without root can make the member
// run bcrypt, and refused with the error the apply would give.
func (m *Member) AuthRequest(ctx context.Context, ai *auth.AuthInfo, r *pb.InternalRaftRequest) (proto.Message, error) {
	if err := m.hashPasswords(ai, r); err != nil {
		return nil, err
	}
	r.Header = requestHeaderOf(ai)
	return m.write(ctx, r)
}

// hashPasswords replaces the clear passwords of user add and password
// change requests with their hashes, as etcd does (a user added with
// NoPassword has none; an empty new password is not hashed), if ai holds
// the root role these requests need while auth is enabled.
func (m *Member) hashPasswords(ai *auth.AuthInfo, r *pb.InternalRaftRequest) error {
	var password, hashed *string
	switch {
	case r.AuthUserAdd != nil && !r.AuthUserAdd.GetOptions().GetNoPassword():
		password, hashed = &r.AuthUserAdd.Password, &r.AuthUserAdd.HashedPassword
	case r.AuthUserChangePassword != nil && r.AuthUserChangePassword.Password != "":
		password, hashed = &r.AuthUserChangePassword.Password, &r.AuthUserChangePassword.HashedPassword
	default:
		return nil
	}
	if err := m.auth.IsAdminPermitted(ai); err != nil {
		return err
	}
	h, err := m.auth.HashPassword(*password)
	if err != nil {
		return err
	}
	*hashed, *password = h, ""
	return nil
}

func requestHeaderOf(ai *auth.AuthInfo) *pb.RequestHeader {
	if ai == nil {
		return nil
	}
	return &pb.RequestHeader{Username: ai.Username, AuthRevision: ai.Revision}
}

// Authenticate checks r's password and issues a token, as etcd does: after
// a linearizable read, the password is checked against the local store
// (bcrypt, outside the apply loop), then an Authenticate entry carrying the
// user and, for simple tokens, the token's random prefix goes through Raft;
// every member applying it registers the simple token, so that it works on
// all of them. Should the auth revision have moved since the check (a
// password changed meanwhile), it starts again. A JWT is signed here once
// the entry is applied.
func (m *Member) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	if err := m.linearizableReadNotify(ctx); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		rev, err := m.auth.CheckPassword(r.Name, r.Password)
		if err != nil {
			if err != rpctypes.ErrGRPCAuthNotEnabled { // as etcd: not worth a warning
				m.lg.Warn("invalid authentication was requested", zap.String("user", r.Name), zap.Error(err))
			}
			return nil, err
		}
		prefix, err := m.auth.TokenPrefix()
		if err != nil {
			return nil, err
		}
		resp, err := m.write(ctx, &pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{Name: r.Name, SimpleToken: prefix}})
		if err != nil {
			return nil, err
		}
		if rev != m.auth.Revision() {
			if attempt == maxAuthenticateAttempts {
				return nil, rpctypes.ErrGRPCTimeout
			}
			m.lg.Info("revision when password checked became stale; retrying")
			continue
		}
		ar := resp.(*pb.AuthenticateResponse)
		if ar.Token == "" {
			if ar.Token, err = m.auth.SignToken(r.Name, rev); err != nil {
				return nil, err
			}
		}
		return ar, nil
	}
}
