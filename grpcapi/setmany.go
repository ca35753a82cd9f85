package grpcapi

import (
	"context"
	"time"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// SetVariables writes several variables of one session.
//
// atomic=true is all or nothing: any malformed update, or any update the
// engine refuses, fails the whole call with that update's status, and no
// variable changes. Otherwise each update stands alone: a malformed one
// gets its own failed result (INVALID_ARGUMENT) without reaching the
// engine, and the rest still apply.
func (s *Server) SetVariables(ctx context.Context, req *pb.SetVariablesRequest) (*pb.SetVariablesResponse, error) {
	defer since(s.hist.setMany, time.Now())
	session := req.GetSessionId()
	updates := req.GetUpdates()
	if len(updates) == 0 {
		return nil, invalidf("updates is empty")
	}
	if err := s.checkIdentifiers(len(updates), "updates"); err != nil {
		return nil, err
	}

	// results[i] answers updates[i]; sets holds the well-formed updates and
	// index maps each back to its position in updates.
	results := make([]*pb.SetVariableResult, len(updates))
	sets := make([]engine.SetRequest, 0, len(updates))
	index := make([]int, 0, len(updates))
	for i, u := range updates {
		set, err := setItemFromProto(session, i, u)
		if err != nil {
			if req.GetAtomic() {
				return nil, err
			}
			results[i] = failedResult(u.GetVariableIdentifier(), err)
			continue
		}
		sets = append(sets, set)
		index = append(index, i)
	}

	resp := &pb.SetVariablesResponse{Results: results}
	if len(sets) == 0 {
		// Nothing well-formed to apply; still answer NOT_FOUND for an
		// unknown session, like every other call naming one.
		info, err := s.backend.GetSession(ctx, session)
		if err != nil {
			return nil, toStatus(err)
		}
		resp.Revision = info.Revision
		return resp, nil
	}

	res, err := s.backend.SetMany(ctx, engine.SetManyRequest{Session: session, Sets: sets, Atomic: req.GetAtomic()})
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Revision = res.Revision
	for j, item := range res.Items {
		i := index[j]
		ident := updates[i].GetVariableIdentifier()
		if item.Err != nil {
			results[i] = failedResult(ident, item.Err)
			continue
		}
		results[i] = setResult(ident, item.SetResult, req.GetSmallAcks())
	}
	return resp, nil
}

// setResult is the result of an update that applied; small leaves the
// variable out (small acks).
func setResult(ident string, res engine.SetResult, small bool) *pb.SetVariableResult {
	r := &pb.SetVariableResult{
		VariableIdentifier: ident,
		Success:            true,
		Revision:           res.Revision,
		VariableId:         res.Variable.ID,
		Version:            res.Variable.Version,
	}
	if !small {
		r.Variable = variableToProto(res.Variable)
	}
	return r
}

// setItemFromProto maps updates[i]. Its session_id may be empty (the call's
// session applies) or equal to the call's; another session is a mistake,
// since one call never spans sessions.
func setItemFromProto(session string, i int, u *pb.SetVariableRequest) (engine.SetRequest, error) {
	if id := u.GetSessionId(); id != "" && id != session {
		return engine.SetRequest{}, invalidf("updates[%d].session_id %q differs from session_id %q", i, id, session)
	}
	set, err := setFromProto(u, "value")
	if err != nil {
		return engine.SetRequest{}, invalidf("updates[%d]: %s", i, message(err))
	}
	set.Session = session
	return set, nil
}

// failedResult is the result of an update that did not apply.
func failedResult(ident string, err error) *pb.SetVariableResult {
	reason, meta := reasonFor(err)
	return &pb.SetVariableResult{
		VariableIdentifier: ident,
		ErrorCode:          int32(codeFor(err)),
		Error:              message(err),
		ErrorReason:        reason,
		ErrorMetadata:      meta,
	}
}
