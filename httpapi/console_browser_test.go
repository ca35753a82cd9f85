package httpapi

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/status"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// The console in a real headless browser: Debian's chromium, driven over
// the DevTools protocol by chromedp. scripts/test.sh installs chromium
// when it is missing; without it these tests skip, saying so.

// ScreenshotDirEnv names the directory the browser tests write their
// screenshots to (default: the test's temporary directory, logged).
const ScreenshotDirEnv = "VARWATCH_SCREENSHOT_DIR"

// browser starts a headless chromium for the test and returns a context
// of one tab in it; the test's cleanup stops it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("VARWATCH_CHROMIUM")
	if path == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		t.Skip("no chromium on PATH (scripts/test.sh installs Debian's: apt-get install chromium); skipping the browser tests")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 860),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 40*time.Second)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
	})
	return ctx
}

// waitJS waits until each JavaScript expression is truthy, in turn.
func waitJS(t *testing.T, ctx context.Context, exprs ...string) {
	t.Helper()
	for _, expr := range exprs {
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(waitTimeout),
			chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
			v, _ := chromedp.Run(ctx, chromedp.Evaluate[any](`document.getElementById("main").innerText`))
			t.Fatalf("waiting for %s: %v\nthe page says: %v", expr, err, v)
		}
	}
}

// do runs browser actions.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// cellText is the JavaScript of a variable's cell's text.
func cellText(name, class string) string {
	return `(document.querySelector('#variables tr[data-var="` + name + `"] td.` + class + `') || {}).textContent`
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv(ScreenshotDirEnv)
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// TestConsoleBrowser: a session's page shows its variables; a value set
// over gRPC appears in place (from the watch); a value set in the page
// that violates a constraint shows the server's error inline and changes
// nothing.
func TestConsoleBrowser(t *testing.T) {
	ctx := browser(t)
	h := newHarness(t, harnessOptions{})
	h.trainingSession("train-1")

	do(t, ctx, chromedp.Navigate(h.url+"/#/s/train-1"))
	waitJS(t, ctx,
		cellText("learning_rate", "value")+` === "0.01"`,
		// The watch is live once it is past the revision the table was read at.
		`document.getElementById("live").textContent.startsWith("live")`,
		// History feeds the chart: loss has had 20 values.
		`document.querySelector('#variables tr[data-var="loss"] svg polyline').getAttribute("points").split(" ").length === 21`,
	)

	// Set over gRPC: the page shows it in place, with the source.
	if _, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "train-1", VariableIdentifier: "learning_rate",
		Value: floatV(0.5), Source: "grpc-test"}); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx,
		cellText("learning_rate", "value")+` === "0.5"`,
		cellText("learning_rate", "source")+` === "grpc-test"`,
		`document.querySelector('#variables tr[data-var="learning_rate"]').classList.contains("flash")`,
	)

	// Set in the page, with the keyboard, a value over the constraint's max.
	input := chromedp.CSS(`form.set[data-var="learning_rate"] input`)
	const errorText = `document.querySelector('form.set[data-var="learning_rate"] .error').textContent`
	do(t, ctx, chromedp.Focus(input), chromedp.SendKeys(input, "7\r"))
	waitJS(t, ctx, errorText+` !== ""`)
	// The page shows the server's message: the one gRPC answers too.
	_, gerr := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "train-1", VariableIdentifier: "learning_rate", Value: floatV(7)})
	if want := status.Convert(gerr).Message(); gerr == nil || eval[string](t, ctx, errorText) != want {
		t.Fatalf("inline error %q, want %q", eval[string](t, ctx, errorText), want)
	}
	got, err := h.client.GetVariable(h.ctx(), &pb.GetVariableRequest{SessionId: "train-1", VariableIdentifier: "learning_rate"})
	if err != nil || got.GetVariable().GetValue().GetFloatValue() != 0.5 {
		t.Fatalf("after the refused set: %v %v", got, err)
	}
	// The server panel lists the watches furthest behind: the page's own
	// watch of the session is one (the panel refreshes every 5s).
	waitJS(t, ctx, `[...document.querySelectorAll('#watches tbody tr td:first-child')].some((td) => td.textContent === "train-1")`)
	screenshot(t, ctx, "console-session.png")

	// A valid value set in the page reaches the engine and comes back
	// through the watch; the error is gone.
	do(t, ctx, chromedp.SetValue(input, ""), chromedp.SendKeys(input, "0.25\r"))
	waitJS(t, ctx,
		cellText("learning_rate", "value")+` === "0.25"`,
		cellText("learning_rate", "source")+` === "console"`,
		errorText+` === ""`,
	)
}

// TestConsoleBrowserTokens: on a server with tokens the page asks for
// one, keeps it in sessionStorage (not localStorage), and a tenant's token
// lists only the tenant's sessions.
func TestConsoleBrowserTokens(t *testing.T) {
	ctx := browser(t)
	h := newHarness(t, harnessOptions{tokens: testTokens})
	h.token = acmeToken
	h.session("acme-run")
	h.token = betaToken
	h.session("beta-run")

	do(t, ctx, chromedp.Navigate(h.url+"/"), chromedp.WaitVisible(chromedp.ID("token-dialog")),
		chromedp.SendKeys(chromedp.ID("token-input"), acmeToken+"\r"))
	waitJS(t, ctx, `document.querySelectorAll("#sessions tbody tr").length === 1`)
	if got := eval[[]string](t, ctx, `[...document.querySelectorAll("#sessions tbody tr")].map(r => r.dataset.session)`); len(got) != 1 || got[0] != "acme-run" {
		t.Fatalf("acme's page lists %v", got)
	}
	if got := eval[string](t, ctx, `sessionStorage.getItem("varwatch.token")`); got != acmeToken {
		t.Fatalf("sessionStorage has %q", got)
	}
	if got := eval[int](t, ctx, `localStorage.length`); got != 0 {
		t.Fatalf("localStorage has %d items", got)
	}
	screenshot(t, ctx, "console-sessions.png")
}

// trainingSession makes the session the browser tests (and the README's
// screenshot) show, over gRPC.
func (h *harness) trainingSession(id string) {
	h.t.Helper()
	if _, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: id,
		Metadata: map[string]string{"owner": "ml", "model": "resnet50"}}); err != nil {
		h.t.Fatal(err)
	}
	lo, hi := 0.0, 1.0
	maxLen := int64(32)
	for _, r := range []*pb.RegisterVariableRequest{
		{Name: "learning_rate", Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: floatV(0.01), Constraints: &pb.Constraints{Min: &lo, Max: &hi}},
		{Name: "epoch", Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: 0}}},
		{Name: "loss", Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: floatV(2.5)},
		{Name: "optimizer", Type: pb.VariableType_VARIABLE_TYPE_CHOICE, InitialValue: &pb.Value{Kind: &pb.Value_ChoiceValue{ChoiceValue: "adam"}},
			Constraints: &pb.Constraints{Choices: []string{"adam", "sgd", "rmsprop"}}},
		{Name: "early_stop", Type: pb.VariableType_VARIABLE_TYPE_BOOLEAN, InitialValue: &pb.Value{Kind: &pb.Value_BooleanValue{}}},
		{Name: "run_name", Type: pb.VariableType_VARIABLE_TYPE_STRING, InitialValue: &pb.Value{Kind: &pb.Value_StringValue{StringValue: "baseline"}},
			Constraints: &pb.Constraints{MaxLength: &maxLen}},
	} {
		r.SessionId = id
		if _, err := h.client.RegisterVariable(h.ctx(), r); err != nil {
			h.t.Fatal(err)
		}
	}
	for i := 1; i <= 20; i++ {
		loss := 2.5/float64(i) + 0.05*float64(i%3)
		if _, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: id, VariableIdentifier: "loss", Value: floatV(loss), Source: "trainer"}); err != nil {
			h.t.Fatal(err)
		}
		if _, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: id, VariableIdentifier: "epoch",
			Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: int64(i)}}, Source: "trainer"}); err != nil {
			h.t.Fatal(err)
		}
	}
}

// TestConsoleBrowserSessionRecreated: when the session is deleted and
// created again (a new incarnation), the page follows the new one: its
// variables, then its changes.
func TestConsoleBrowserSessionRecreated(t *testing.T) {
	ctx := browser(t)
	h := newHarness(t, harnessOptions{})
	h.session("s", "old")
	do(t, ctx, chromedp.Navigate(h.url+"/#/s/s"))
	waitJS(t, ctx, cellText("old", "value")+` === "0"`, `document.getElementById("live").textContent.startsWith("live")`)
	if _, err := h.client.CleanupSession(h.ctx(), &pb.CleanupSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, `document.getElementById("live").textContent === "waiting for the session"`)
	h.session("s", "new")
	waitJS(t, ctx, cellText("new", "value")+` === "0"`, `document.querySelector('#variables tr[data-var="old"]') === null`,
		`document.getElementById("live").textContent.startsWith("live")`)
	h.set("s", "new", 3)
	waitJS(t, ctx, cellText("new", "value")+` === "3"`)
}
