package httpapi

import (
	"net/http"
	"slices"

	"github.com/presenced/presenced/internal/presence"
)

type statusRequest struct {
	IDs []int64 `json:"ids"`
}

type statusResponse struct {
	// encoding/json writes the int64 keys as decimal strings.
	Statuses map[int64]statusJSON `json:"statuses"`
}

// statuses answers the presence of up to MaxBulkIDs users; unknown IDs are
// left out and duplicates answered once.
func (s *server) statuses(w http.ResponseWriter, r *http.Request) {
	var req statusRequest
	if err := decodeJSON(r, &req); err != nil {
		s.respondError(w, r, err)
		return
	}
	switch {
	case len(req.IDs) == 0:
		s.respondError(w, r, badRequest("ids must be a non-empty array of user IDs"))
		return
	case len(req.IDs) > presence.MaxBulkIDs:
		s.respondError(w, r, badRequest("ids may hold at most 1000 user IDs"))
		return
	}
	for _, id := range req.IDs {
		if id <= 0 {
			s.respondError(w, r, badRequest("ids must be positive integers"))
			return
		}
	}
	slices.Sort(req.IDs)
	ids := slices.Compact(req.IDs)
	found, err := s.store.Statuses(r.Context(), ids)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	resp := statusResponse{Statuses: make(map[int64]statusJSON, len(found))}
	for id, st := range found {
		resp.Statuses[id] = newStatusJSON(st)
	}
	writeJSON(w, http.StatusOK, resp)
}
