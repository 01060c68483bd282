package mongosim

import (
	"errors"
	"slices"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/failpoint"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// A member's fail points (package failpoint keeps them), set with the
// configureFailPoint command on admin, as on a real server started with
// enableTestCommands: failCommand and failGetMoreAfterCursorCheckout.

// beforeCommand applies failCommand to the command in cc: it may block,
// close the connection (errCloseConnection) or fail the command.
func (s *Server) beforeCommand(cc *cmdCtx) error {
	p, ok := s.failPoints.Take(failpoint.FailCommand, func(fp *failpoint.Point) bool {
		return slices.Contains(fp.Commands, cc.name) && (fp.AppName == "" || fp.AppName == cc.conn.getAppName())
	})
	if !ok {
		return nil
	}
	if p.Block > 0 {
		t := time.NewTimer(p.Block)
		select {
		case <-t.C:
		case <-cc.ctx.Done():
			t.Stop()
			return errCloseConnection
		}
	}
	if p.CloseConn {
		return errCloseConnection
	}
	if p.HasCode {
		// failCommand adds no labels of its own: only those configured.
		return &CommandError{Code: p.Code, Message: "Failing command via 'failCommand' failpoint", Labels: p.Labels}
	}
	return nil
}

// afterCursorCheckout applies failGetMoreAfterCursorCheckout to a getMore on
// c. Like a real server, it adds ResumableChangeStreamError to a
// change-stream cursor's error when the code is one a stream may resume from.
func (s *Server) afterCursorCheckout(c *serverCursor) error {
	p, ok := s.failPoints.Take(failpoint.FailGetMoreAfterCheckout, func(*failpoint.Point) bool { return true })
	if !ok {
		return nil
	}
	err := &CommandError{Code: p.Code, Message: "Failing getMore via 'failGetMoreAfterCursorCheckout' failpoint"}
	if c.changeStream && isResumableChangeStreamCode(p.Code) {
		err.Labels = []string{labelResumableChangeStreamError}
	}
	return err
}

func handleConfigureFailPoint(cc *cmdCtx) (bsoncore.Document, error) {
	if cc.db != "admin" {
		return nil, cmdErr(13, "configureFailPoint may only be run against the admin database.")
	}
	name, _, err := cc.stringArg("configureFailPoint")
	if err != nil {
		return nil, err
	}
	if name != failpoint.FailCommand && name != failpoint.FailGetMoreAfterCheckout {
		return nil, cmdErr(codeBadValue, "Cannot find failpoint %s", name)
	}
	mode, hasMode := cc.field("mode")
	data, _, err := cc.docArg("data")
	if err != nil {
		return nil, err
	}
	fp, err := failpoint.Parse(mode, hasMode, data)
	if err != nil {
		var fe *failpoint.Error
		if errors.As(err, &fe) {
			return nil, cmdErr(fe.Code, "%s", fe.Msg)
		}
		return nil, err
	}
	cc.s.failPoints.Configure(name, fp)
	var dst []byte
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendInt64Element(dst, "count", 0)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}
