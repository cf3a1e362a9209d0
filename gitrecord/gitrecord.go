// Package gitrecord keeps a record of the domains' manifests in a Git
// repository (the cluster-config repository an operator reviews, or that Argo
// CD or Flux syncs): one YAML file per domain under a root folder, written,
// committed and pushed once per change. It is the only importer of go-git and
// knows nothing of Postgres, DNS or Kubernetes: it is handed the manifests.
package gitrecord

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Defaults, the same as AlgaPSA's.
const (
	DefaultBranch      = "main"
	DefaultWorkdir     = "/tmp/portal-domain-sync"
	DefaultRoot        = "alga-psa/portal-domains"
	DefaultAuthorName  = "Portal Domains Bot"
	DefaultAuthorEmail = "platform@nineminds.ai"
)

// TrailerKey names the commit trailer that identifies the change a commit
// records; a change whose trailer is already on the branch is not committed
// again.
const TrailerKey = "Portal-Domain-Change"

// pushAttempts bounds the fetch, reset, rewrite and push rounds one Record
// makes when the branch keeps moving; the caller's retry takes it from there.
const pushAttempts = 5

// historyDepth is how many commits of the branch are searched for a change's
// trailer. A change is recorded by the job that runs right after it, so its
// commit is recent unless hundreds of other changes were pushed since.
const historyDepth = 1000

// Config says where the record lives. Token is the password of HTTP basic
// auth (a GitHub token works with any user name); it is never written to the
// workdir's config, a log line, an error or a commit.
type Config struct {
	URL         string
	Branch      string
	Workdir     string
	Root        string
	AuthorName  string
	AuthorEmail string
	Username    string
	Token       string
	// Review sends each change to a branch of its own for review instead
	// of the configured branch; the apply waits for its merge (Propose).
	Review bool
}

// Enabled reports whether a repository is configured.
func (c Config) Enabled() bool { return c.URL != "" }

// ConfigFromEnv reads the PORTAL_DOMAIN_GIT_* settings and
// GITHUB_ACCESS_TOKEN. Without PORTAL_DOMAIN_GIT_REPO the record is off and
// the other settings are not checked.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		URL:         strings.TrimSpace(getenv("PORTAL_DOMAIN_GIT_REPO")),
		Branch:      cmp.Or(strings.TrimSpace(getenv("PORTAL_DOMAIN_GIT_BRANCH")), DefaultBranch),
		Workdir:     cmp.Or(strings.TrimSpace(getenv("PORTAL_DOMAIN_GIT_WORKDIR")), DefaultWorkdir),
		Root:        cmp.Or(strings.TrimSpace(getenv("PORTAL_DOMAIN_GIT_ROOT")), DefaultRoot),
		AuthorName:  cmp.Or(strings.TrimSpace(getenv("PORTAL_DOMAIN_GIT_AUTHOR_NAME")), DefaultAuthorName),
		AuthorEmail: cmp.Or(strings.TrimSpace(getenv("PORTAL_DOMAIN_GIT_AUTHOR_EMAIL")), DefaultAuthorEmail),
		Username:    cmp.Or(strings.TrimSpace(getenv("PORTAL_DOMAIN_GIT_USERNAME")), "x-access-token"),
		Token:       strings.TrimSpace(getenv("GITHUB_ACCESS_TOKEN")),
	}
	switch v := strings.TrimSpace(getenv("PORTAL_DOMAIN_GIT_REVIEW")); v {
	case "", "false", "0":
	case "true", "1":
		c.Review = true
	default:
		return Config{}, fmt.Errorf("PORTAL_DOMAIN_GIT_REVIEW: %q is not true or false", v)
	}
	if !c.Enabled() {
		if c.Review {
			return Config{}, errors.New("PORTAL_DOMAIN_GIT_REVIEW: needs PORTAL_DOMAIN_GIT_REPO")
		}
		return Config{}, nil
	}
	return c, c.validate()
}

func (c Config) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("PORTAL_DOMAIN_GIT_REPO: want an http(s) URL of the repository")
	}
	if u.User != nil {
		return errors.New("PORTAL_DOMAIN_GIT_REPO: put no credentials in the URL; the token goes in GITHUB_ACCESS_TOKEN")
	}
	if c.Token == "" {
		return errors.New("GITHUB_ACCESS_TOKEN: required when PORTAL_DOMAIN_GIT_REPO is set")
	}
	if !plumbing.NewBranchReferenceName(c.Branch).IsBranch() || strings.ContainsAny(c.Branch, " ~^:?*[\\") || strings.Contains(c.Branch, "..") {
		return fmt.Errorf("PORTAL_DOMAIN_GIT_BRANCH: %q is not a branch name", c.Branch)
	}
	if _, err := cleanRoot(c.Root); err != nil {
		return fmt.Errorf("PORTAL_DOMAIN_GIT_ROOT: %w", err)
	}
	if !filepath.IsAbs(c.Workdir) {
		return fmt.Errorf("PORTAL_DOMAIN_GIT_WORKDIR: %q is not an absolute path", c.Workdir)
	}
	return nil
}

func cleanRoot(root string) (string, error) {
	r := path.Clean(strings.Trim(root, "/"))
	if r == "." || r == ".." || strings.HasPrefix(r, "../") || strings.HasPrefix(r, ".git") {
		return "", fmt.Errorf("%q is not a folder inside the repository", root)
	}
	return r, nil
}

// Change is one manifest change of one domain. Documents are the objects as
// JSON, written as one multi-document YAML file <root>/<Slug>.yaml (AlgaPSA's
// layout); no documents records the removal of that file.
type Change struct {
	// Key identifies the change (domain, generation and what happened); it
	// is the commit's trailer, so recording a change twice commits once.
	Key        string
	Tenant     string
	DomainID   string
	Domain     string
	Slug       string
	Status     string
	Generation int64
	Documents  [][]byte
}

// Result says what Record did.
type Result struct {
	Commit string // the commit holding the change: new, or found on the branch
	// Outcome: "committed", "recorded" (the trailer was already on the
	// branch) or "unchanged" (the branch already had these files).
	Outcome string
}

// Recorder writes changes to the repository. One Recorder serialises its own
// calls; several processes are serialised by the queue that runs the job and,
// should two push at once anyway, by the push being rejected and redone.
type Recorder struct {
	cfg    Config
	logger *slog.Logger
	mu     sync.Mutex
	now    func() time.Time
}

// New returns a Recorder for cfg.
func New(cfg Config, logger *slog.Logger) *Recorder {
	return &Recorder{cfg: cfg, logger: logger, now: time.Now}
}

// Record commits and pushes c, unless the branch already records it.
// Errors never contain the token.
func (r *Recorder) Record(ctx context.Context, c Change) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, err := r.record(ctx, c)
	if err != nil {
		return res, r.maskErr(err)
	}
	return res, nil
}

// prepare checks c and returns its file, content and the open workdir.
func (r *Recorder) prepare(ctx context.Context, c Change) (string, []byte, *git.Repository, error) {
	if c.Key == "" || strings.ContainsAny(c.Key, "\r\n") {
		return "", nil, nil, fmt.Errorf("record %s: the change has no usable key", c.Domain)
	}
	if errs := validation.IsDNS1123Label(c.Slug); len(errs) > 0 {
		return "", nil, nil, fmt.Errorf("record %s: file name %q: %s", c.Domain, c.Slug, strings.Join(errs, "; "))
	}
	root, err := cleanRoot(r.cfg.Root)
	if err != nil {
		return "", nil, nil, err
	}
	content, err := manifestYAML(c.Documents)
	if err != nil {
		return "", nil, nil, fmt.Errorf("record %s: %w", c.Domain, err)
	}
	repo, err := r.open(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	return path.Join(root, c.Slug+".yaml"), content, repo, nil
}

func (r *Recorder) record(ctx context.Context, c Change) (Result, error) {
	file, content, repo, err := r.prepare(ctx, c)
	if err != nil {
		return Result{}, err
	}
	if r.cfg.Review {
		// Nothing goes to the branch directly: the change is proposed.
		p, err := r.propose(ctx, repo, file, content, c)
		if err != nil {
			return Result{}, err
		}
		if p.Merged {
			return Result{Commit: p.Commit, Outcome: "unchanged"}, nil
		}
		return Result{Commit: p.Commit, Outcome: "proposed"}, nil
	}
	var lastErr error
	for attempt := 1; attempt <= pushAttempts; attempt++ {
		head, err := r.sync(ctx, repo)
		if err != nil {
			return Result{}, err
		}
		if head != plumbing.ZeroHash {
			if found, err := findTrailer(repo, head, c.Key, historyDepth); err != nil {
				return Result{}, err
			} else if found != plumbing.ZeroHash {
				return Result{Commit: found.String(), Outcome: "recorded"}, nil
			}
		}
		hash, changed, err := r.commit(repo, file, content, c)
		if err != nil {
			return Result{}, err
		}
		if !changed {
			return Result{Commit: head.String(), Outcome: "unchanged"}, nil
		}
		err = repo.PushContext(ctx, &git.PushOptions{
			RemoteName: "origin",
			RefSpecs:   []config.RefSpec{config.RefSpec(r.branchRef() + ":" + r.branchRef())},
			Auth:       r.auth(),
		})
		if err == nil || errors.Is(err, git.NoErrAlreadyUpToDate) {
			r.logger.Info("manifest change pushed", "commit", hash.String(), "file", file,
				"tenant_id", c.Tenant, "portal_domain_id", c.DomainID, "generation", c.Generation)
			return Result{Commit: hash.String(), Outcome: "committed"}, nil
		}
		if ctx.Err() != nil || errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) {
			return Result{}, fmt.Errorf("push %s: %w", r.cfg.Branch, err)
		}
		// Most likely the branch moved since the fetch: fetch again, reset
		// to it and make the commit anew.
		lastErr = err
		r.logger.Info("push rejected, fetching the branch and committing again", "error", r.maskErr(err),
			"attempt", attempt, "tenant_id", c.Tenant, "portal_domain_id", c.DomainID)
	}
	return Result{}, fmt.Errorf("push %s: still rejected after %d attempts: %w", r.cfg.Branch, pushAttempts, lastErr)
}

func (r *Recorder) branchRef() string { return plumbing.NewBranchReferenceName(r.cfg.Branch).String() }

func (r *Recorder) remoteRef() plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName("origin", r.cfg.Branch)
}

func (r *Recorder) auth() *githttp.BasicAuth {
	return &githttp.BasicAuth{Username: r.cfg.Username, Password: r.cfg.Token}
}

// open opens the workdir's clone, or makes one: an empty repository whose
// origin is the configured URL (without credentials), fetched by sync.
func (r *Recorder) open(ctx context.Context) (*git.Repository, error) {
	dir := r.cfg.Workdir
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create git workdir: %w", err)
		}
		repo, err = git.PlainInit(dir, false)
	}
	if err != nil {
		return nil, fmt.Errorf("open git workdir %s: %w", dir, err)
	}
	rc := &config.RemoteConfig{Name: "origin", URLs: []string{r.cfg.URL},
		Fetch: []config.RefSpec{config.RefSpec("+refs/heads/" + r.cfg.Branch + ":" + r.remoteRef().String())}}
	cfg, err := repo.Config()
	if err != nil {
		return nil, fmt.Errorf("read git workdir config: %w", err)
	}
	if old, ok := cfg.Remotes["origin"]; !ok || len(old.URLs) != 1 || old.URLs[0] != r.cfg.URL || len(old.Fetch) != 1 || old.Fetch[0] != rc.Fetch[0] {
		cfg.Remotes["origin"] = rc
		if err := repo.SetConfig(cfg); err != nil {
			return nil, fmt.Errorf("set the workdir's origin: %w", err)
		}
	}
	return repo, nil
}

// sync fetches the branch and resets the local branch, index and files to it,
// dropping whatever an earlier, unpushed attempt left. It returns the
// branch's commit, or the zero hash when the remote has no such branch yet.
func (r *Recorder) sync(ctx context.Context, repo *git.Repository) (plumbing.Hash, error) {
	specs := []config.RefSpec{config.RefSpec("+refs/heads/" + r.cfg.Branch + ":" + r.remoteRef().String())}
	if r.cfg.Review {
		specs = append(specs, config.RefSpec("+refs/heads/"+ReviewPrefix+"*:refs/remotes/origin/"+ReviewPrefix+"*"))
	}
	err := repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", Auth: r.auth(), Force: true, Prune: true, RefSpecs: specs})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return plumbing.ZeroHash, fmt.Errorf("fetch %s: %w", r.cfg.Branch, err)
	}
	branch := plumbing.ReferenceName(r.branchRef())
	remote, err := repo.Reference(r.remoteRef(), true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		// A new branch (or an empty repository): start from nothing.
		if err := repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, branch)); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("check out %s: %w", r.cfg.Branch, err)
		}
		_ = repo.Storer.RemoveReference(branch)
		// Clear the files and index of an earlier unpushed attempt.
		if err := os.RemoveAll(filepath.Join(r.cfg.Workdir, filepath.FromSlash(r.cfg.Root))); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("clear the workdir: %w", err)
		}
		_ = os.Remove(filepath.Join(r.cfg.Workdir, ".git", "index"))
		return plumbing.ZeroHash, nil
	}
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("read origin/%s: %w", r.cfg.Branch, err)
	}
	if err := repo.Storer.SetReference(plumbing.NewHashReference(branch, remote.Hash())); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("reset %s: %w", r.cfg.Branch, err)
	}
	if err := repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, branch)); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("check out %s: %w", r.cfg.Branch, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("open the worktree: %w", err)
	}
	if err := wt.Reset(&git.ResetOptions{Commit: remote.Hash(), Mode: git.HardReset}); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("reset to origin/%s: %w", r.cfg.Branch, err)
	}
	// A hard reset keeps untracked files: drop those an interrupted attempt
	// wrote, so the files are exactly the branch's.
	if err := wt.Clean(&git.CleanOptions{Dir: true}); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("clean the workdir: %w", err)
	}
	return remote.Hash(), nil
}

// commit writes (or removes) file, and commits when that changed the tree.
func (r *Recorder) commit(repo *git.Repository, file string, content []byte, c Change) (plumbing.Hash, bool, error) {
	wt, err := repo.Worktree()
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("open the worktree: %w", err)
	}
	full := filepath.Join(r.cfg.Workdir, filepath.FromSlash(file))
	if content == nil {
		if _, err := os.Lstat(full); errors.Is(err, os.ErrNotExist) {
			return plumbing.ZeroHash, false, nil // nothing recorded, nothing to remove
		}
		if _, err := wt.Remove(file); err != nil {
			return plumbing.ZeroHash, false, fmt.Errorf("remove %s: %w", file, err)
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return plumbing.ZeroHash, false, fmt.Errorf("create %s: %w", path.Dir(file), err)
		}
		if err := os.WriteFile(full, content, 0o644); err != nil {
			return plumbing.ZeroHash, false, fmt.Errorf("write %s: %w", file, err)
		}
		if _, err := wt.Add(file); err != nil {
			return plumbing.ZeroHash, false, fmt.Errorf("stage %s: %w", file, err)
		}
	}
	st, err := wt.Status()
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("status: %w", err)
	}
	if fs := st.File(file); fs.Staging == git.Unmodified || fs.Staging == git.Untracked {
		return plumbing.ZeroHash, false, nil
	}
	sig := &object.Signature{Name: r.cfg.AuthorName, Email: r.cfg.AuthorEmail, When: r.now()}
	hash, err := wt.Commit(Message(c), &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("commit %s: %w", file, err)
	}
	return hash, true, nil
}

// Message is the commit message of c: what happened, to which domain and
// tenant, at which status and pipeline generation, and the change's trailer.
func Message(c Change) string {
	verb := "apply"
	if c.Documents == nil {
		verb = "remove"
	}
	return fmt.Sprintf("portal-domains: %s %s (tenant %s)\n\nstatus: %s\ngeneration: %d\ndomain id: %s\n\n%s: %s\n",
		verb, c.Domain, c.Tenant, c.Status, c.Generation, c.DomainID, TrailerKey, c.Key)
}

// findTrailer looks for a commit carrying key in the branch's recent history.
func findTrailer(repo *git.Repository, head plumbing.Hash, key string, depth int) (plumbing.Hash, error) {
	iter, err := repo.Log(&git.LogOptions{From: head})
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("read history: %w", err)
	}
	defer iter.Close()
	want := "\n" + TrailerKey + ": " + key + "\n"
	var found plumbing.Hash
	n := 0
	err = iter.ForEach(func(cm *object.Commit) error {
		if strings.Contains("\n"+cm.Message+"\n", want) {
			found = cm.Hash
			return errStop
		}
		if n++; n >= depth {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return plumbing.ZeroHash, fmt.Errorf("read history: %w", err)
	}
	return found, nil
}

var errStop = errors.New("stop")

// manifestYAML joins the JSON documents as YAML documents with sorted keys;
// nil for none.
func manifestYAML(docs [][]byte) ([]byte, error) {
	if len(docs) == 0 {
		return nil, nil
	}
	var b strings.Builder
	for i, d := range docs {
		y, err := yaml.JSONToYAML(d)
		if err != nil {
			return nil, fmt.Errorf("manifest document %d: %w", i+1, err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return []byte(b.String()), nil
}

// maskErr replaces the token wherever it appears in err's text.
func (r *Recorder) maskErr(err error) error {
	if err == nil || r.cfg.Token == "" || !strings.Contains(err.Error(), r.cfg.Token) {
		return err
	}
	return maskedError{msg: Mask(err.Error(), r.cfg.Token), err: err}
}

// Mask replaces every occurrence of secret in s with ***.
func Mask(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "***")
}

type maskedError struct {
	msg string
	err error
}

func (e maskedError) Error() string { return e.msg }

// Unwrap is deliberately absent: a caller printing a wrapped error with %+v
// must not reach the unmasked text. Is lets errors.Is still match.
func (e maskedError) Is(target error) bool { return errors.Is(e.err, target) }

// ReviewPrefix starts the name of every review branch:
// portal-domains/<tenant7>-<generation>-<change>.
const ReviewPrefix = "portal-domains/"

// ReviewBranch is the branch a change is proposed on.
func ReviewBranch(c Change) string {
	change := "apply"
	if c.Documents == nil {
		change = "remove"
	}
	return fmt.Sprintf("%s%s-%d-%s", ReviewPrefix, c.Slug, c.Generation, change)
}

// Proposal is where a change stands in review.
type Proposal struct {
	Branch string
	Commit string
	// Merged: the configured branch has the change (its trailer, or the
	// domain's file exactly as the change writes it, which a squash merge
	// or a hand-made equal commit also gives).
	Merged bool
}

// Propose puts c on its review branch, based on the configured branch,
// unless it is there already, and says whether it was merged.
func (r *Recorder) Propose(ctx context.Context, c Change) (Proposal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	file, content, repo, err := r.prepare(ctx, c)
	if err != nil {
		return Proposal{}, r.maskErr(err)
	}
	p, err := r.propose(ctx, repo, file, content, c)
	return p, r.maskErr(err)
}

func (r *Recorder) propose(ctx context.Context, repo *git.Repository, file string, content []byte, c Change) (Proposal, error) {
	branch := ReviewBranch(c)
	head, err := r.sync(ctx, repo)
	if err != nil {
		return Proposal{}, err
	}
	if merged, err := hasChange(repo, head, file, content, c.Key); err != nil || merged {
		return Proposal{Branch: branch, Commit: head.String(), Merged: merged}, err
	}
	if ref, err := repo.Reference(plumbing.NewRemoteReferenceName("origin", branch), true); err == nil {
		if found, err := findTrailer(repo, ref.Hash(), c.Key, 1); err != nil {
			return Proposal{}, err
		} else if found != plumbing.ZeroHash {
			return Proposal{Branch: branch, Commit: found.String()}, nil // waiting for review
		}
	}
	hash, changed, err := r.commit(repo, file, content, c)
	if err != nil {
		return Proposal{}, err
	}
	if !changed {
		return Proposal{Branch: branch, Commit: head.String(), Merged: true}, nil
	}
	err = repo.PushContext(ctx, &git.PushOptions{
		RemoteName: "origin",
		// Forced: the branch is this change's own; an older attempt left
		// on it is replaced.
		RefSpecs: []config.RefSpec{config.RefSpec("+" + r.branchRef() + ":refs/heads/" + branch)},
		Auth:     r.auth(),
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return Proposal{}, fmt.Errorf("push %s: %w", branch, err)
	}
	r.logger.Info("manifest change proposed for review", "branch", branch, "commit", hash.String(),
		"tenant_id", c.Tenant, "portal_domain_id", c.DomainID, "generation", c.Generation)
	return Proposal{Branch: branch, Commit: hash.String()}, nil
}

// hasChange reports whether the commit head holds the change: its trailer
// in recent history, or the file exactly as the change leaves it.
func hasChange(repo *git.Repository, head plumbing.Hash, file string, content []byte, key string) (bool, error) {
	if head == plumbing.ZeroHash {
		return content == nil, nil
	}
	if found, err := findTrailer(repo, head, key, historyDepth); err != nil || found != plumbing.ZeroHash {
		return found != plumbing.ZeroHash, err
	}
	cm, err := repo.CommitObject(head)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", head, err)
	}
	f, err := cm.File(file)
	if errors.Is(err, object.ErrFileNotFound) {
		return content == nil, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", file, err)
	}
	got, err := f.Contents()
	if err != nil {
		return false, fmt.Errorf("read %s: %w", file, err)
	}
	return content != nil && got == string(content), nil
}
