package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// HTTP01 is the plain-HTTP port of the local gateway, standing in for port 80 of Istio's
// ingress gateway. It routes as Istio's ingress controller would from the objects in the API
// server: a request for /.well-known/acme-challenge/<token> goes to the backend Service of
// the Ingress (of IngressClass) whose rule matches its host and path exactly, and on to a Pod
// that Service selects. cert-manager creates that Ingress, Service and Pod for each HTTP-01
// challenge; with no kubelet the Pod never runs, so the gateway answers as its acmesolver
// container would, from the Pod's own spec (its --domain, --token and --key arguments), and
// logs that it did. Every other request is redirected to HTTPS, as our Gateway's port-80
// server does.
type HTTP01 struct {
	opts   HTTP01Options
	logger *slog.Logger
	ln     net.Listener
	srv    *http.Server
	served chan error
}

// ListenHTTP01 binds addr ("127.0.0.1:80"). Binding port 80 needs root or
// CAP_NET_BIND_SERVICE; the error says so.
func ListenHTTP01(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("local gateway: listen on %s for HTTP-01 (ACME CAs validate on port 80): %w; run as root, or grant the binary CAP_NET_BIND_SERVICE (sudo setcap cap_net_bind_service=+ep <binary>), or use the DEV-ONLY issuer", addr, err)
		}
		return nil, fmt.Errorf("local gateway: listen on %s for HTTP-01: %w", addr, err)
	}
	return ln, nil
}

// HTTP01Options say where the routes come from and who hears of an answer.
type HTTP01Options struct {
	Kube kubernetes.Interface
	// IngressClass is the class of the Ingresses routed (cert-manager's solver's).
	IngressClass string
	Logger       *slog.Logger
	// OnAnswer, when set, hears of each challenge answered: the host, the solver Pod
	// (namespace/name) and the client's User-Agent (Pebble's validation or cert-manager's
	// self-check).
	OnAnswer func(host, pod, userAgent string)
}

// ServeHTTP01 serves on ln until Close.
func ServeHTTP01(ln net.Listener, opts HTTP01Options) *HTTP01 {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &HTTP01{opts: opts, logger: logger.With("component", "dev-gateway"), ln: ln, served: make(chan error, 1)}
	h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { h.served <- h.srv.Serve(ln) }()
	return h
}

// Addr is the listening "host:port".
func (h *HTTP01) Addr() string { return h.ln.Addr().String() }

// ChallengePath is where ACME CAs fetch HTTP-01 answers.
const ChallengePath = "/.well-known/acme-challenge/"

func (h *HTTP01) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	if !strings.HasPrefix(r.URL.Path, ChallengePath) {
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
		return
	}
	token := strings.TrimPrefix(r.URL.Path, ChallengePath)
	key, pod, err := h.answer(r.Context(), host, r.URL.Path, token)
	if err != nil {
		h.logger.Info("HTTP-01 challenge not routed", "host", host, "path", r.URL.Path, "user_agent", r.UserAgent(), "reason", err.Error())
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	h.logger.Info("HTTP-01 challenge answered from the solver Pod's spec (no kubelet runs it)", "host", host, "token", token, "pod", pod, "user_agent", r.UserAgent())
	if h.opts.OnAnswer != nil {
		h.opts.OnAnswer(host, pod, r.UserAgent())
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(key))
}

// answer routes host+path as Istio would: Ingress rule → Service → selected Pod → the
// acmesolver's answer for that domain and token.
func (h *HTTP01) answer(ctx context.Context, host, path, token string) (key, pod string, err error) {
	ings, err := h.opts.Kube.NetworkingV1().Ingresses(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", "", fmt.Errorf("list Ingresses: %w", err)
	}
	for _, ing := range ings.Items {
		if !ingressOfClass(&ing, h.opts.IngressClass) {
			continue
		}
		for _, rule := range ing.Spec.Rules {
			if !strings.EqualFold(rule.Host, host) || rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				if p.Path != path || p.Backend.Service == nil {
					continue
				}
				return h.fromService(ctx, ing.Namespace, p.Backend.Service.Name, host, token)
			}
		}
	}
	return "", "", fmt.Errorf("no Ingress of class %s routes %s%s", h.opts.IngressClass, host, path)
}

func ingressOfClass(ing *networkingv1.Ingress, class string) bool {
	if ing.Spec.IngressClassName != nil {
		return *ing.Spec.IngressClassName == class
	}
	return ing.Annotations["kubernetes.io/ingress.class"] == class
}

func (h *HTTP01) fromService(ctx context.Context, namespace, name, host, token string) (key, pod string, err error) {
	svc, err := h.opts.Kube.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", "", fmt.Errorf("Service %s/%s: %w", namespace, name, err)
	}
	if len(svc.Spec.Selector) == 0 {
		return "", "", fmt.Errorf("Service %s/%s selects no Pods", namespace, name)
	}
	pods, err := h.opts.Kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return "", "", fmt.Errorf("Pods of Service %s/%s: %w", namespace, name, err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		if k, ok := solverAnswer(&p, host, token); ok {
			return k, namespace + "/" + p.Name, nil
		}
	}
	return "", "", fmt.Errorf("no Pod of Service %s/%s solves %s for %s", namespace, name, token, host)
}

// solverAnswer reads cert-manager's acmesolver arguments (--domain, --token, --key) from the
// Pod's containers: the solver answers the key for its own domain and token only.
func solverAnswer(p *corev1.Pod, host, token string) (string, bool) {
	for _, c := range p.Spec.Containers {
		args := map[string]string{}
		for _, a := range c.Args {
			if k, v, ok := strings.Cut(a, "="); ok {
				args[strings.TrimLeft(k, "-")] = v
			}
		}
		if strings.EqualFold(args["domain"], host) && args["token"] == token && args["key"] != "" {
			return args["key"], true
		}
	}
	return "", false
}

// Close stops serving, waiting up to ctx for requests in flight.
func (h *HTTP01) Close(ctx context.Context) error {
	err := h.srv.Shutdown(ctx)
	if serveErr := <-h.served; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	if err != nil {
		return fmt.Errorf("dev gateway HTTP-01: %w", err)
	}
	return nil
}
