package edgebasetest

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"

	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// User is an auth user to seed.
type User struct {
	ID          string // default: a generated UUIDv7
	Email       string
	Password    string // default: "Passw0rd!" + Email
	DisplayName string
	Role        string // default "user"
	CreatedAt   time.Time
}

// passwordHash is the peer's pbkdf2:sha256:<iterations>:<salt>:<hash>.
func passwordHash(password string, salt []byte, iterations int) string {
	dk, err := pbkdf2.Key(sha256.New, password, salt, iterations, 32)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("pbkdf2:sha256:%d:%s:%s", iterations, base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(dk))
}

func saltFor(s string) []byte {
	h := sha256.Sum256([]byte("salt/" + s))
	return h[:16]
}

// insertUser writes the rows a signup creates: _users, _email_index,
// _users_public (email hidden: emailVisibility is private) and, when
// session is set, a _sessions row.
func (e *Emulator) insertUser(ctx context.Context, tx querier, u User, hash string, session bool, userAgent string) (string, error) {
	if u.ID == "" {
		u.ID = e.newID()
	}
	if u.Role == "" {
		u.Role = "user"
	}
	created := u.CreatedAt
	if created.IsZero() {
		created = e.now()
	}
	ts := isoTime(created)
	var display any
	if u.DisplayName != "" {
		display = u.DisplayName
	}
	var lastSignIn any
	if session {
		lastSignIn = ts
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO _users (id, email, passwordHash, displayName, avatarUrl, emailVisibility, role, verified, isAnonymous, locale, metadata, appMetadata, lastSignedInAt, createdAt, updatedAt)
VALUES (?, ?, ?, ?, NULL, 'private', ?, 0, 0, 'en', NULL, NULL, ?, ?, ?)`, u.ID, u.Email, hash, display, u.Role, lastSignIn, ts, ts); err != nil {
		return "", err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO _email_index (email, userId, shardId, status, createdAt) VALUES (?, ?, 0, 'confirmed', ?)`, u.Email, u.ID, ts); err != nil {
		return "", err
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO _users_public (id, email, displayName, avatarUrl, role, isAnonymous, createdAt, updatedAt) VALUES (?, NULL, ?, NULL, ?, 0, ?, ?)`, u.ID, display, u.Role, ts, ts); err != nil {
		return "", err
	}
	if !session {
		return "", nil
	}
	refresh := e.jwt(object{{"type", "refresh"}, {"iat", float64(created.Unix())}, {"iss", "edgebase:user"}, {"sub", u.ID}, {"exp", float64(created.Add(28 * 24 * time.Hour).Unix())}, {"jti", e.newID()}})
	meta := string(marshalJS(object{{"ip", "127.0.0.1"}, {"userAgent", userAgent}, {"lastActiveAt", ts}}))
	if _, err := tx.ExecContext(ctx, `INSERT INTO _sessions (id, userId, refreshToken, previousRefreshToken, rotatedAt, expiresAt, createdAt, metadata) VALUES (?, ?, ?, NULL, NULL, ?, ?, ?)`,
		e.newID(), u.ID, refresh, isoTime(created.Add(28*24*time.Hour)), ts, meta); err != nil {
		return "", err
	}
	return refresh, nil
}

// jwt signs claims with HS256 (JWT_USER_SECRET from Env, else derived).
func (e *Emulator) jwt(claims object) string {
	secret := e.opts.Env["JWT_USER_SECRET"]
	if secret == "" {
		secret = "edgebasetest-jwt/" + e.key
	}
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256"}`))
	body := enc.EncodeToString(marshalJS(claims))
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(head + "." + body))
	return head + "." + body + "." + enc.EncodeToString(m.Sum(nil))
}

func (e *Emulator) signup(ctx context.Context, q *request) *response {
	v, err := q.json()
	o, ok := v.(object)
	if err != nil || !ok {
		return slugError(400, "Invalid JSON body.", "validation-failed")
	}
	emailV, _ := o.get("email")
	passV, _ := o.get("password")
	email, _ := emailV.(string)
	pass, _ := passV.(string)
	email = strings.ToLower(strings.TrimSpace(email))
	if email == "" || !strings.Contains(email, "@") {
		return slugError(400, "Invalid email format.", "invalid-email")
	}
	if len([]rune(pass)) < 8 {
		return slugError(400, "Password must be at least 8 characters.", "password-too-short")
	}
	u := User{Email: email}
	if dv, ok := o.get("data"); ok {
		if d, ok := dv.(object); ok {
			if n, ok := d.get("displayName"); ok {
				u.DisplayName, _ = n.(string)
			}
		}
	}
	e.d1.mu.Lock()
	defer e.d1.mu.Unlock()
	db, err := e.d1.ensureAuth(ctx)
	if err != nil {
		return unexpected()
	}
	if ids, err := queryStrings(ctx, db, `SELECT userId FROM _email_index WHERE email = ?`, email); err != nil {
		return unexpected()
	} else if len(ids) > 0 {
		return slugError(409, "Email already registered.", "email-already-exists")
	}
	u.ID = e.newID()
	hash := passwordHash(pass, saltFor(u.ID), 100000)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return unexpected()
	}
	refresh, err := e.insertUser(ctx, tx, u, hash, true, q.r.Header.Get("User-Agent"))
	if err != nil {
		_ = tx.Rollback()
		return unexpected()
	}
	if err := tx.Commit(); err != nil {
		return unexpected()
	}
	users, err := queryObjects(ctx, db, d1Value, `SELECT * FROM _users WHERE id = ?`, u.ID)
	if err != nil || len(users) == 0 {
		return unexpected()
	}
	now := e.now()
	access := e.jwt(object{{"sub", u.ID}, {"email", email}, {"displayName", nilIfEmpty(u.DisplayName)}, {"role", "user"}, {"isAnonymous", false},
		{"iat", float64(now.Unix())}, {"iss", "edgebase:user"}, {"exp", float64(now.Add(15 * time.Minute).Unix())}, {"jti", e.newID()}})
	return jsonResponse(201, object{{"user", sanitizeUser(users[0])}, {"accessToken", access}, {"refreshToken", refresh}})
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// sanitizeUser drops passwordHash/appMetadata, parses JSON columns and turns
// 0/1 flags into booleans.
func sanitizeUser(u object) object {
	out := object{}
	for _, c := range u {
		switch c.Key {
		case "passwordHash", "appMetadata":
			continue
		case "customClaims", "metadata":
			if s, ok := c.Value.(string); ok && s != "" {
				v, err := parseJS([]byte(s))
				if err != nil {
					v = nil
				}
				c.Value = v
			}
		case "isAnonymous", "verified", "phoneVerified", "disabled":
			if f, ok := c.Value.(float64); ok {
				c.Value = f == 1
			}
		}
		out = append(out, c)
	}
	return out
}

func (e *Emulator) listUsers(ctx context.Context, q *request) *response {
	switch e.validateKey(q.r, "auth:admin:users:read") {
	case keyMissing:
		return errorResponse(403, "X-EdgeBase-Service-Key is required for admin auth operations.")
	case keyInvalid:
		return errorResponse(401, "Invalid X-EdgeBase-Service-Key for admin auth operations.")
	}
	qs := q.r.URL.Query()
	limit := 100
	if n, ok := parseJSInt(qs.Get("limit")); ok && n > 0 {
		limit = min(n, 1000)
	}
	offset := 0
	if n, ok := parseJSInt(qs.Get("cursor")); ok && n >= 0 {
		offset = n
	}
	e.d1.mu.Lock()
	defer e.d1.mu.Unlock()
	db, err := e.d1.ensureAuth(ctx)
	if err != nil {
		return unexpected()
	}
	var total int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) as cnt FROM _users`).Scan(&total); err != nil {
		return unexpected()
	}
	rows, err := queryObjects(ctx, db, d1Value, `SELECT * FROM _users ORDER BY createdAt DESC LIMIT ? OFFSET ?`, limit, offset)
	if err != nil {
		return unexpected()
	}
	users := make([]any, len(rows))
	for i, r := range rows {
		users[i] = sanitizeUser(r)
	}
	var cursor any
	if total > offset+limit {
		cursor = fmt.Sprint(offset + limit)
	}
	return jsonResponse(200, object{{"users", users}, {"cursor", cursor}})
}

var _ http.Handler = (*Emulator)(nil)
