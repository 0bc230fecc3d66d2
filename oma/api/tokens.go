package api

import (
	"errors"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/godwit/godwit/oma/tokens"
	"github.com/godwit/godwit/problem"
)

// tokenCreated is the answer to POST /api/v1/tokens: the only time the
// token is shown.
type tokenCreated struct {
	tokens.Info
	Token string `json:"token"`
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) error {
	var req tokenRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return badRequest("name", "name is required: 1 to 64 letters, digits, '.', '-' or '_'")
	}
	scope, err := tokens.ParseScope(req.Scope)
	if err != nil {
		return badRequest("scope", "scope %q: read (GET only), operate (also discovery and jobs) or admin (also tokens and VMAs); empty: %s", req.Scope, tokens.DefaultScope)
	}
	now := a.now().UTC()
	secret, err := tokens.Create(a.store, req.Name, scope, now)
	switch {
	case errors.Is(err, tokens.ErrInvalidName):
		return badRequest("name", "name %q: use 1 to 64 letters, digits, '.', '-' or '_'", req.Name)
	case errors.Is(err, tokens.ErrExists):
		return &problem.Error{Status: http.StatusConflict, Field: "name", Detail: "a token named " + req.Name + " exists already"}
	case err != nil:
		return err
	}
	a.log.InfoContext(r.Context(), "created an API token", "token", req.Name, "scope", scope, "by", holderOf(r).Name)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", "/api/v1/tokens/"+req.Name)
	return writeJSON(w, http.StatusCreated, tokenCreated{Info: tokens.Info{Name: req.Name, Scope: scope, CreatedAt: now}, Token: secret})
}

func (a *API) listTokens(w http.ResponseWriter, _ *http.Request) error {
	list, err := a.tokens.List()
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, tokenList{Tokens: nonNil(list)})
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) error {
	name := mux.Vars(r)["name"]
	err := a.tokens.Revoke(name)
	if errors.Is(err, tokens.ErrNotFound) {
		return &problem.Error{Status: http.StatusNotFound, Field: "name", Detail: "no token named " + name}
	}
	if err != nil {
		return err
	}
	a.log.InfoContext(r.Context(), "revoked an API token", "token", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ownToken answers the name and scope of the request's own token: what a
// client (the web console) may do with it.
func (a *API) ownToken(w http.ResponseWriter, r *http.Request) error {
	h := holderOf(r)
	return writeJSON(w, http.StatusOK, tokenSelf{Name: h.Name, Scope: h.Scope})
}
