package server_test

import (
	"bufio"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/websocket"

	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/server"
)

// TestBrowserRiverUI drives a real headless Chromium through the DevTools
// protocol. Credentials in the URL are not enough here: the page would load,
// but Chromium refuses the SPA's fetch() calls from a document whose URL
// carries credentials. So the test answers the browser's basic-auth
// challenge the way a person at the login prompt would (Fetch.authRequired),
// which also proves the 401 carries a challenge a browser acts on.
func TestBrowserRiverUI(t *testing.T) {
	t.Parallel()

	b := setup(t, setupOpts{cfg: server.Config{User: "ops", Password: "s3cret"}, withRiver: true})
	const domainID = "7c1e2f00-0000-4000-8000-00000000b10e"
	_, err := b.riverClient.Insert(t.Context(), testJobArgs{kind: "verify_dns", DomainID: domainID},
		&river.InsertOpts{Queue: "dns"})
	require.NoError(t, err)

	// Two tenants' jobs, tagged as the trigger tags them.
	const initechID, globexID = "1ec7ec41-0000-4000-8000-0000000000a1", "9b0bec51-0000-4000-8000-0000000000b2"
	for _, j := range []struct{ id, name, tenant string }{
		{initechID, "portal.initech.test", "1ec7ec41-4a5b-4c6d-9e7f-8a9b0c1d2e03"},
		{globexID, "clients.globex.test", "9b0bec51-2d3e-4f40-8a51-6c7d8e9f0a02"},
	} {
		_, err := b.riverClient.Insert(t.Context(), testJobArgs{kind: "verify_dns", DomainID: j.id},
			&river.InsertOpts{Queue: "dns", Tags: domain.JobTags(j.name, domain.TenantID(j.tenant))})
		require.NoError(t, err)
	}

	browser := startChromium(t)

	t.Run("LogsInAndSeesTheInsertedJob", func(t *testing.T) {
		t.Parallel()
		page := browser.newPage(t)
		challenges := page.answerBasicAuth(t, "ops", "s3cret")
		page.call(t, "Page.navigate", map[string]any{"url": b.baseURL + "/riverui/jobs?state=available"})
		text := page.waitForText(t, func(text string) bool {
			return strings.Contains(text, "verify_dns") && strings.Contains(text, domainID)
		})
		require.Contains(t, text, "Available")
		require.Positive(t, challenges(), "the browser was challenged for basic auth")

		if dir := os.Getenv("BROWSER_SCREENSHOT_DIR"); dir != "" {
			page.screenshot(t, dir+"/riverui-jobs.png")
		}
	})

	// An operator who knows only the domain name types its tag into the
	// job filter and sees that domain's jobs and no other's.
	t.Run("FindsADomainsJobsByItsTag", func(t *testing.T) {
		t.Parallel()
		page := browser.newPage(t)
		page.answerBasicAuth(t, "ops", "s3cret")
		page.call(t, "Page.navigate", map[string]any{"url": b.baseURL + "/riverui/jobs?state=available"})
		page.waitForText(t, func(text string) bool {
			return strings.Contains(text, initechID) && strings.Contains(text, globexID)
		})
		page.call(t, "Runtime.evaluate", map[string]any{"expression": `document.querySelector('[data-testid="job-search-input"]').focus()`})
		page.call(t, "Input.insertText", map[string]any{"text": "tags:" + domain.DomainTag("portal.initech.test")})
		page.pressEnter(t)
		page.waitForText(t, func(text string) bool {
			return strings.Contains(text, initechID) && !strings.Contains(text, globexID)
		})
		// The filter is in the page's address, so it is a link an operator
		// can share (what PORTAL_DOMAIN_UI_URL's links use).
		var location struct {
			Result struct {
				Value string `json:"value"`
			} `json:"result"`
		}
		page.callInto(t, "Runtime.evaluate", map[string]any{"expression": "location.search", "returnByValue": true}, &location)
		require.Contains(t, location.Result.Value, "tags="+domain.DomainTag("portal.initech.test"))
		if dir := os.Getenv("BROWSER_SCREENSHOT_DIR"); dir != "" {
			page.screenshot(t, dir+"/riverui-jobs-by-domain.png")
		}
	})

	t.Run("WithoutCredentialsGets401", func(t *testing.T) {
		t.Parallel()
		page := browser.newPage(t)
		statuses := make(chan int, 16)
		page.onEvent("Network.responseReceived", func(params json.RawMessage) {
			var p struct {
				Type     string `json:"type"`
				Response struct {
					Status int `json:"status"`
				} `json:"response"`
			}
			_ = json.Unmarshal(params, &p)
			if p.Type == "Document" {
				statuses <- p.Response.Status
			}
		})
		// A person dismissing the login prompt: the browser then shows the
		// 401 response itself.
		page.answerAuth(t, map[string]any{"response": "CancelAuth"})
		page.call(t, "Network.enable", nil)
		page.call(t, "Page.navigate", map[string]any{"url": b.baseURL + "/riverui/jobs?state=available"})
		select {
		case status := <-statuses:
			require.Equal(t, 401, status)
		case <-time.After(30 * time.Second):
			t.Fatal("no document response within 30s")
		}
		text := page.waitForText(t, func(text string) bool { return strings.Contains(text, "unauthorized") })
		require.NotContains(t, text, "verify_dns")
	})
}

const chromiumInstallHint = "install it with `apt-get update && apt-get install -y chromium` (make test does this: scripts/ensure-package.sh), or set CHROMIUM to its path"

type chromium struct {
	conn *cdpConn
}

// startChromium starts headless Chromium with the DevTools protocol on a
// free loopback port and stops it at cleanup. A missing browser fails the
// test: this project's CI installs it, so absence is a broken setup.
func startChromium(t *testing.T) *chromium {
	t.Helper()
	bin := cmp.Or(os.Getenv("CHROMIUM"), "/usr/bin/chromium")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("headless browser test needs Chromium at %s (%v): %s", bin, err, chromiumInstallHint)
	}

	cmd := exec.Command(bin,
		"--headless",
		"--no-sandbox",
		"--disable-gpu",
		"--disable-quic",
		"--no-first-run",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-sync",
		"--disable-dev-shm-usage",
		"--remote-debugging-address=127.0.0.1",
		"--remote-debugging-port=0",
		// x/net/websocket always sends an Origin header, which Chromium
		// rejects on the DevTools socket unless allowed.
		"--remote-allow-origins=*",
		"--user-data-dir="+t.TempDir(),
		"about:blank",
	)
	// Its own process group, so cleanup can stop the renderer and helper
	// processes it forks along with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start(), "start %s: %s", bin, chromiumInstallHint)

	var logMu sync.Mutex
	var log strings.Builder
	wsURL := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`DevTools listening on (ws://\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			log.WriteString(line + "\n")
			logMu.Unlock()
			if m := re.FindStringSubmatch(line); m != nil {
				wsURL <- m[1]
			}
		}
		close(wsURL)
	}()

	waited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(waited)
	}()
	var conn *cdpConn
	t.Cleanup(func() {
		// Ask Chromium to quit so it reaps its own helper processes; kill
		// the whole group only if it does not.
		if conn != nil {
			_, _ = conn.roundTrip("", "Browser.close", nil)
			conn.close()
		}
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	})

	var url string
	select {
	case u, ok := <-wsURL:
		if !ok {
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("chromium exited before opening DevTools:\n%s", log.String())
		}
		url = u
	case <-time.After(60 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("chromium did not open DevTools within 60s:\n%s", log.String())
	}

	conn, err = dialCDP(url)
	require.NoError(t, err)
	return &chromium{conn: conn}
}

// newPage opens a tab in a fresh browser context (its own cookies and auth
// cache) and attaches to it.
func (c *chromium) newPage(t *testing.T) *cdpSession {
	t.Helper()
	browser := &cdpSession{conn: c.conn}
	var ctxRes struct {
		BrowserContextID string `json:"browserContextId"`
	}
	browser.callInto(t, "Target.createBrowserContext", map[string]any{}, &ctxRes)
	var target struct {
		TargetID string `json:"targetId"`
	}
	browser.callInto(t, "Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": ctxRes.BrowserContextID}, &target)
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	browser.callInto(t, "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	t.Cleanup(func() {
		_, _ = c.conn.roundTrip("", "Target.disposeBrowserContext", map[string]any{"browserContextId": ctxRes.BrowserContextID})
	})
	return &cdpSession{conn: c.conn, id: attached.SessionID}
}

// cdpConn is a minimal Chrome DevTools protocol client: JSON messages over
// one websocket, replies matched by id, events dispatched by session.
type cdpConn struct {
	ws *websocket.Conn

	mu       sync.Mutex
	nextID   int64
	pending  map[int64]chan cdpMessage
	handlers map[string]func(json.RawMessage) // key: sessionID + "/" + method
	closed   bool
	readErr  error
}

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    any             `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

func dialCDP(url string) (*cdpConn, error) {
	cfg, err := websocket.NewConfig(url, "http://127.0.0.1/")
	if err != nil {
		return nil, fmt.Errorf("devtools config %s: %w", url, err)
	}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dial devtools %s: %w", url, err)
	}
	c := &cdpConn{ws: ws, pending: map[int64]chan cdpMessage{}, handlers: map[string]func(json.RawMessage){}}
	go c.readLoop()
	return c, nil
}

func (c *cdpConn) readLoop() {
	for {
		var raw []byte
		if err := websocket.Message.Receive(c.ws, &raw); err != nil {
			c.mu.Lock()
			c.readErr = err
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		var msg struct {
			cdpMessage
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(raw, &msg); err != nil {
			continue
		}
		c.mu.Lock()
		if msg.ID != 0 {
			if ch, ok := c.pending[msg.ID]; ok {
				delete(c.pending, msg.ID)
				ch <- msg.cdpMessage
			}
			c.mu.Unlock()
			continue
		}
		h := c.handlers[msg.SessionID+"/"+msg.Method]
		c.mu.Unlock()
		if h != nil {
			h(msg.Params)
		}
	}
}

func (c *cdpConn) send(sessionID, method string, params any) (chan cdpMessage, error) {
	c.mu.Lock()
	if c.closed || c.readErr != nil {
		c.mu.Unlock()
		return nil, errors.New("devtools connection closed")
	}
	c.nextID++
	id := c.nextID
	ch := make(chan cdpMessage, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	if params == nil {
		params = map[string]any{}
	}
	if err := websocket.JSON.Send(c.ws, cdpMessage{ID: id, SessionID: sessionID, Method: method, Params: params}); err != nil {
		return nil, fmt.Errorf("send %s: %w", method, err)
	}
	return ch, nil
}

func (c *cdpConn) roundTrip(sessionID, method string, params any) (json.RawMessage, error) {
	ch, err := c.send(sessionID, method, params)
	if err != nil {
		return nil, err
	}
	select {
	case msg, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("%s: devtools connection closed", method)
		}
		if msg.Error != nil {
			return nil, fmt.Errorf("%s: %s (code %d)", method, msg.Error.Message, msg.Error.Code)
		}
		return msg.Result, nil
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("%s: no reply within 60s", method)
	}
}

func (c *cdpConn) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	_ = c.ws.Close()
}

type cdpSession struct {
	conn *cdpConn
	id   string
	mu   sync.Mutex // guards test state touched by event handlers
}

func (s *cdpSession) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	res, err := s.conn.roundTrip(s.id, method, params)
	require.NoError(t, err)
	return res
}

func (s *cdpSession) callInto(t *testing.T, method string, params, out any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(s.call(t, method, params), out), method)
}

// sendAsync is for replies sent from event handlers, which run on the read
// loop and so must not wait for their own reply.
func (s *cdpSession) sendAsync(method string, params any) {
	_, _ = s.conn.send(s.id, method, params)
}

func (s *cdpSession) onEvent(method string, h func(json.RawMessage)) {
	s.conn.mu.Lock()
	defer s.conn.mu.Unlock()
	s.conn.handlers[s.id+"/"+method] = func(p json.RawMessage) {
		s.mu.Lock()
		defer s.mu.Unlock()
		h(p)
	}
}

// waitForText polls the page's visible text until ok accepts it. The SPA
// renders after its API calls return, so there is no single event to wait
// for; the generous limit only bounds a broken run.
func (s *cdpSession) waitForText(t *testing.T, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var text string
	for {
		var res struct {
			Result struct {
				Value string `json:"value"`
			} `json:"result"`
		}
		s.callInto(t, "Runtime.evaluate", map[string]any{
			"expression":    "document.body ? document.body.innerText : ''",
			"returnByValue": true,
		}, &res)
		text = res.Result.Value
		if ok(text) {
			return text
		}
		if time.Now().After(deadline) {
			t.Fatalf("page text never matched within 60s; last text:\n%s", text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// answerBasicAuth answers the page's basic-auth challenges as a person at
// the login prompt would, and returns how many it answered so far.
func (s *cdpSession) answerBasicAuth(t *testing.T, user, password string) func() int {
	t.Helper()
	return s.answerAuth(t, map[string]any{"response": "ProvideCredentials", "username": user, "password": password})
}

// answerAuth lets every request through and answers each auth challenge
// with response (DevTools' AuthChallengeResponse); it returns how many
// challenges it answered so far.
func (s *cdpSession) answerAuth(t *testing.T, response map[string]any) func() int {
	t.Helper()
	var challenges int
	s.onEvent("Fetch.requestPaused", func(params json.RawMessage) {
		var p struct {
			RequestID string `json:"requestId"`
		}
		_ = json.Unmarshal(params, &p)
		s.sendAsync("Fetch.continueRequest", map[string]any{"requestId": p.RequestID})
	})
	s.onEvent("Fetch.authRequired", func(params json.RawMessage) {
		var p struct {
			RequestID string `json:"requestId"`
		}
		_ = json.Unmarshal(params, &p)
		challenges++
		s.sendAsync("Fetch.continueWithAuth", map[string]any{"requestId": p.RequestID, "authChallengeResponse": response})
	})
	s.call(t, "Fetch.enable", map[string]any{"handleAuthRequests": true, "patterns": []map[string]any{{"urlPattern": "*"}}})
	return func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return challenges
	}
}

// pressEnter types the Enter key into the focused element.
func (s *cdpSession) pressEnter(t *testing.T) {
	t.Helper()
	for _, typ := range []string{"keyDown", "keyUp"} {
		s.call(t, "Input.dispatchKeyEvent", map[string]any{"type": typ, "key": "Enter", "code": "Enter",
			"windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13, "text": map[string]string{"keyDown": "\r"}[typ]})
	}
}

func (s *cdpSession) screenshot(t *testing.T, path string) {
	t.Helper()
	var res struct {
		Data string `json:"data"`
	}
	s.callInto(t, "Page.captureScreenshot", map[string]any{"format": "png"}, &res)
	png, err := base64.StdEncoding.DecodeString(res.Data)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, png, 0o644))
}
