package backend

import (
	"context"
	"errors"
	"net/http"
)

// Enroll exchanges an enroll code for an agent id and an API key
// (POST /enroll, without a bearer). opts.APIKey is ignored.
//
// The backend's 401 and 403 (code unknown or expired) and 409 (code used)
// come back as an *Error of Kind Permanent carrying the backend's reason.
// Nothing is retried here: enroll is run by a person, who sees the error.
func Enroll(ctx context.Context, opts Options, req EnrollRequest) (EnrollResponse, error) {
	opts.APIKey = ""
	c, err := newClient(opts)
	if err != nil {
		return EnrollResponse{}, err
	}
	defer c.CloseIdleConnections()
	var resp EnrollResponse
	err = c.sendJSON(ctx, call{method: http.MethodPost, path: "/enroll", noAuth: true}, req, &resp)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusUnauthorized {
			e.Kind = Permanent // the code is unknown; no key is involved
		}
		return EnrollResponse{}, err
	}
	if resp.AgentID == "" || resp.APIKey == "" {
		return EnrollResponse{}, &Error{Kind: Permanent, Status: http.StatusCreated, Op: "POST " + APIPrefix + "/enroll",
			Message: "the backend's answer has no agent_id or no api_key"}
	}
	return resp, nil
}
