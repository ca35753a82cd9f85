package client

import "strconv"

// What Next takes from the end of a stream before retryOrFail decides
// whether to reconnect (README "What a client does with each ending";
// which ends resume at all is resumable's).

// resumeAt takes the resume_revision that a server's end of a stream names
// (a slow-consumer cut-off, a shutdown): resume from it. The server ends a
// stream only between whole revisions, and a status comes after every
// message before it, so a revision delivered in part so far is whole when
// the end says it was delivered: the resume starts after it instead of
// replaying it to skip what arrived. Never past what actually arrived.
func (w *Watch) resumeAt(err error) {
	info := errorInfo(err)
	if info == nil || w.partRev == 0 {
		return
	}
	r, perr := strconv.ParseInt(info.GetMetadata()["resume_revision"], 10, 64)
	if perr == nil && r >= w.partRev {
		w.markComplete(w.partRev)
	}
}
