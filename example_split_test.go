package changestream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// An event over 16 MiB (here an update whose description and looked-up
// document are 9 MiB each) arrives in fragments, which the stream puts back
// together.
func ExampleWithSplitLargeEvents() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // 9 MiB documents: slow under -race
	defer cancel()
	files := client.Database("shop").Collection("files")
	_, _ = files.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "body", Value: strings.Repeat("a", 9<<20)}})

	cs, err := changestream.WatchCollection(ctx, files, nil,
		changestream.WithSplitLargeEvents(), changestream.WithFullDocument(changestream.FullDocumentUpdateLookup))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())
	// 9 MiB in updateDescription and 9 MiB in the looked-up document.
	_, _ = files.UpdateByID(ctx, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "body", Value: strings.Repeat("b", 9<<20)}}}})

	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		return
	}
	var ev changestream.Event[bson.Raw]
	_ = cs.Decode(&ev)
	fmt.Println(ev.OperationType, "whole:", ev.SplitEvent == nil, "over 16 MiB:", len(cs.Current) > 16<<20)
	// Output:
	// update whole: true over 16 MiB: true
}

// Without WithSplitLargeEvents, such an event ends the stream; the error
// holds the position to reopen at.
func ExampleEventTooLargeError() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // 9 MiB documents: slow under -race
	defer cancel()
	files := client.Database("shop").Collection("files")
	_, _ = files.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "body", Value: strings.Repeat("a", 9<<20)}})

	cs, err := changestream.WatchCollection(ctx, files, nil, changestream.WithFullDocument(changestream.FullDocumentUpdateLookup))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())
	_, _ = files.UpdateByID(ctx, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "body", Value: strings.Repeat("b", 9<<20)}}}})

	if cs.Next(ctx) {
		fmt.Println("unexpected event")
		return
	}
	fmt.Println("too large:", errors.Is(cs.Err(), changestream.ErrEventTooLarge), "alive:", cs.Alive())
	var tl *changestream.EventTooLargeError
	if errors.As(cs.Err(), &tl) {
		again, err := changestream.WatchCollection(ctx, files, nil, changestream.WithSplitLargeEvents(),
			changestream.WithFullDocument(changestream.FullDocumentUpdateLookup), changestream.WithResumeAfter(tl.Position.Token))
		if err != nil {
			fmt.Println("reopen:", err)
			return
		}
		defer again.Close(context.Background())
		fmt.Println("reopened, next event whole:", again.Next(ctx))
	}
	// Output:
	// too large: true alive: false
	// reopened, next event whole: true
}
