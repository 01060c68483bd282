package unified

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/changestream-go/changestream/internal/testclient"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// serverInfo is what runOnRequirements are checked against: read from the
// deployment itself (buildInfo and hello), so that a real deployment named
// by MONGODB_URI and the simulator are judged alike.
type serverInfo struct {
	version    []int
	versionStr string
	topology   string // single, replicaset, sharded, load-balanced
	serverless bool
	auth       bool
	params     bson.Raw // getParameter: "*", when the server answers it
}

func (si serverInfo) String() string {
	return fmt.Sprintf("%s %s", si.topology, si.versionStr)
}

// probeServer connects to uri and reads the facts requirements name.
func probeServer(uri string) (serverInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := testclient.Options(uri)
	client, err := mongo.Connect(opts)
	if err != nil {
		return serverInfo{}, err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	admin := client.Database("admin")
	var bi struct {
		Version string `bson:"version"`
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&bi); err != nil {
		return serverInfo{}, fmt.Errorf("buildInfo: %w", err)
	}
	hello, err := admin.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Raw()
	if err != nil {
		return serverInfo{}, fmt.Errorf("hello: %w", err)
	}
	si := serverInfo{versionStr: bi.Version, version: parseVersion(bi.Version), auth: opts.Auth != nil}
	switch {
	case hello.Lookup("serviceId").Type != 0 || (opts.LoadBalanced != nil && *opts.LoadBalanced):
		si.topology = "load-balanced"
	case hello.Lookup("msg").Type == bson.TypeString && hello.Lookup("msg").StringValue() == "isdbgrid":
		si.topology = "sharded"
	case hello.Lookup("setName").Type != 0:
		si.topology = "replicaset"
	default:
		si.topology = "single"
	}
	si.serverless = strings.EqualFold(os.Getenv("SERVERLESS"), "serverless") || os.Getenv("SERVERLESS") == "1"
	if p, err := admin.RunCommand(ctx, bson.D{{Key: "getParameter", Value: "*"}}).Raw(); err == nil {
		si.params = p
	}
	return si, nil
}

// parseVersion reads "8.0.4" (or "8.0.4-rc1") as [8 0 4].
func parseVersion(s string) []int {
	s, _, _ = strings.Cut(s, "-")
	var out []int
	for _, p := range strings.Split(s, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			break
		}
		out = append(out, n)
	}
	return out
}

// compareVersions compares two versions component by component, missing
// components counting as 0.
func compareVersions(a, b []int) int {
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// runOn is one runOnRequirement.
type runOn struct {
	MinServerVersion string   `bson:"minServerVersion"`
	MaxServerVersion string   `bson:"maxServerVersion"`
	Topologies       []string `bson:"topologies"`
	Serverless       string   `bson:"serverless"`
	Auth             *bool    `bson:"auth"`
	ServerParameters bson.Raw `bson:"serverParameters"`
	CSFLE            *bool    `bson:"csfle"`
	AuthMechanism    string   `bson:"authMechanism"`
}

// unmet returns why the server does not meet r, "" when it does.
func (r runOn) unmet(si serverInfo) string {
	if r.MinServerVersion != "" && compareVersions(si.version, parseVersion(r.MinServerVersion)) < 0 {
		return fmt.Sprintf("needs server version >= %s", r.MinServerVersion)
	}
	if r.MaxServerVersion != "" && compareVersions(si.version, parseVersion(r.MaxServerVersion)) > 0 {
		return fmt.Sprintf("needs server version <= %s", r.MaxServerVersion)
	}
	if len(r.Topologies) > 0 {
		ok := false
		for _, t := range r.Topologies {
			ok = ok || t == si.topology || (t == "sharded-replicaset" && si.topology == "sharded")
		}
		if !ok {
			return fmt.Sprintf("needs topology %v", r.Topologies)
		}
	}
	switch r.Serverless {
	case "require":
		if !si.serverless {
			return "needs a serverless deployment"
		}
	case "forbid":
		if si.serverless {
			return "cannot run on a serverless deployment"
		}
	}
	if r.Auth != nil && *r.Auth != si.auth {
		return fmt.Sprintf("needs auth %v, the deployment has auth %v", *r.Auth, si.auth)
	}
	if r.AuthMechanism != "" {
		return fmt.Sprintf("needs auth mechanism %s", r.AuthMechanism)
	}
	if r.CSFLE != nil && *r.CSFLE {
		return "needs client-side field level encryption, which this runner does not build in"
	}
	if r.ServerParameters != nil {
		elems, _ := r.ServerParameters.Elements()
		for _, e := range elems {
			var got bson.RawValue
			if si.params != nil {
				got, _ = si.params.LookupErr(e.Key())
			}
			m := matcher{}
			if got.Type == 0 || m.matchValue(e.Value(), got) != nil {
				return fmt.Sprintf("needs server parameter %s = %s", e.Key(), e.Value())
			}
		}
	}
	return ""
}

// unmetAll returns why none of reqs is met, "" when one is (or reqs is
// empty): a list of requirements is met when any of its entries is.
func unmetAll(reqs []runOn, si serverInfo) string {
	if len(reqs) == 0 {
		return ""
	}
	var why []string
	for _, r := range reqs {
		reason := r.unmet(si)
		if reason == "" {
			return ""
		}
		why = append(why, reason)
	}
	return strings.Join(why, "; or ")
}
