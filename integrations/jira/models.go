package jira

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Model names (issue 5: other systems rely on them).
const (
	ModelProject      = "project"
	ModelIssue        = "issue"
	ModelIssueComment = "issue_comment"
	ModelUser         = "user"
)

// ---- Records (README.md documents every field) ----

// User is a Jira account: a record of its own, and the author, assignee
// and so on inside other records.
type User struct {
	// ID is the accountId on Cloud, the user key on Data Center.
	ID          string `json:"id"`
	AccountID   string `json:"account_id,omitempty"`
	Key         string `json:"key,omitempty"`
	Username    string `json:"username,omitempty"`
	DisplayName string `json:"display_name"`
	Email       string `json:"email,omitempty"`
	Active      bool   `json:"active"`
	AccountType string `json:"account_type,omitempty"`
	TimeZone    string `json:"time_zone,omitempty"`
}

// Project is a Jira project.
type Project struct {
	ID          string  `json:"id"`
	Key         string  `json:"key"`
	Name        string  `json:"name"`
	Description string  `json:"description"`
	ProjectType string  `json:"project_type"`
	Category    *IDName `json:"category"`
	Lead        *User   `json:"lead"`
	Archived    bool    `json:"archived"`
	URL         string  `json:"url"`
}

// IDName is a named Jira object (category, priority, version, ...).
type IDName struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// IssueRef points at another issue.
type IssueRef struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

// IssueLink is one link of an issue to another.
type IssueLink struct {
	ID string `json:"id"`
	// Type is the link type's name ("Blocks"); Relation the phrase seen
	// from this issue ("blocks", "is blocked by").
	Type      string   `json:"type"`
	Relation  string   `json:"relation"`
	Direction string   `json:"direction"` // outward, inward
	Issue     IssueRef `json:"issue"`
}

// CustomField is a custom field's value with the field's name.
type CustomField struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

// ChangeItem is one field changed by a history entry.
type ChangeItem struct {
	Field      string `json:"field"`
	FieldType  string `json:"field_type"`
	FieldID    string `json:"field_id,omitempty"`
	From       string `json:"from"`
	FromString string `json:"from_string"`
	To         string `json:"to"`
	ToString   string `json:"to_string"`
}

// History is one changelog entry: who changed what, when.
type History struct {
	ID        string       `json:"id"`
	Author    *User        `json:"author"`
	CreatedAt time.Time    `json:"created_at"`
	Items     []ChangeItem `json:"items"`
}

// Issue is a Jira issue with its whole changelog.
type Issue struct {
	ID                       string                 `json:"id"`
	Key                      string                 `json:"key"`
	URL                      string                 `json:"url"`
	ProjectID                string                 `json:"project_id"`
	ProjectKey               string                 `json:"project_key"`
	Summary                  string                 `json:"summary"`
	Description              string                 `json:"description"`
	Type                     string                 `json:"type"`
	Subtask                  bool                   `json:"subtask"`
	Status                   string                 `json:"status"`
	StatusCategory           string                 `json:"status_category"`
	Priority                 string                 `json:"priority"`
	Resolution               string                 `json:"resolution"`
	ResolvedAt               *time.Time             `json:"resolved_at"`
	Labels                   []string               `json:"labels"`
	Components               []string               `json:"components"`
	FixVersions              []string               `json:"fix_versions"`
	AffectsVersions          []string               `json:"affects_versions"`
	Assignee                 *User                  `json:"assignee"`
	Reporter                 *User                  `json:"reporter"`
	Creator                  *User                  `json:"creator"`
	Parent                   *IssueRef              `json:"parent"`
	Subtasks                 []IssueRef             `json:"subtasks"`
	Links                    []IssueLink            `json:"links"`
	DueDate                  string                 `json:"due_date"`
	OriginalEstimateSeconds  *int64                 `json:"original_estimate_seconds"`
	RemainingEstimateSeconds *int64                 `json:"remaining_estimate_seconds"`
	TimeSpentSeconds         *int64                 `json:"time_spent_seconds"`
	CommentCount             int                    `json:"comment_count"`
	CustomFields             map[string]CustomField `json:"custom_fields"`
	Changelog                []History              `json:"changelog"`
	CreatedAt                time.Time              `json:"created_at"`
	UpdatedAt                time.Time              `json:"updated_at"`
}

// Comment is a comment on an issue.
type Comment struct {
	ID           string      `json:"id"`
	IssueID      string      `json:"issue_id"`
	IssueKey     string      `json:"issue_key"`
	ProjectKey   string      `json:"project_key"`
	Author       *User       `json:"author"`
	UpdateAuthor *User       `json:"update_author"`
	Body         string      `json:"body"`
	Visibility   *Visibility `json:"visibility"`
	Public       *bool       `json:"public,omitempty"`
	CreatedAt    time.Time   `json:"created_at"`
	UpdatedAt    time.Time   `json:"updated_at"`
}

// Visibility restricts a comment to a group or a project role.
type Visibility struct {
	Type  string `json:"type"` // group, role
	Value string `json:"value"`
}

// ---- Jira's JSON (REST API v2) ----

// jiraTime reads Jira's timestamps ("2024-01-02T03:04:05.000+0000"); null
// is the zero time.
type jiraTime struct{ time.Time }

func (t *jiraTime) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	v, err := parseJiraTime(s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

func parseJiraTime(s string) (time.Time, error) {
	// Go accepts a fractional second after the seconds even when the
	// layout has none.
	for _, layout := range []string{"2006-01-02T15:04:05-0700", time.RFC3339} {
		if v, err := time.Parse(layout, s); err == nil {
			return v.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not a Jira time: %q", s)
}

func (t jiraTime) ptr() *time.Time {
	if t.IsZero() {
		return nil
	}
	v := t.Time
	return &v
}

// text is a text field: a string in API v2, kept as JSON text if Jira
// sends anything else (a v3 document from a misbehaving proxy).
type text string

func (t *text) UnmarshalJSON(b []byte) error {
	var s string
	if bytes.Equal(b, []byte("null")) {
		*t = ""
		return nil
	}
	if err := json.Unmarshal(b, &s); err != nil {
		*t = text(b)
		return nil
	}
	*t = text(s)
	return nil
}

type apiServerInfo struct {
	BaseURL        string `json:"baseUrl"`
	Version        string `json:"version"`
	DeploymentType string `json:"deploymentType"` // Cloud, Server, DataCenter
	ServerTitle    string `json:"serverTitle"`
}

type apiUser struct {
	AccountID    string `json:"accountId"`
	AccountType  string `json:"accountType"`
	Key          string `json:"key"`
	Name         string `json:"name"`
	DisplayName  string `json:"displayName"`
	EmailAddress string `json:"emailAddress"`
	Active       bool   `json:"active"`
	TimeZone     string `json:"timeZone"`
}

// userID is Cloud's accountId, else Data Center's key, else its name.
func userID(u *apiUser) string {
	switch {
	case u.AccountID != "":
		return u.AccountID
	case u.Key != "":
		return u.Key
	}
	return u.Name
}

type apiIDName struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type apiProject struct {
	ID              string     `json:"id"`
	Key             string     `json:"key"`
	Name            string     `json:"name"`
	Description     text       `json:"description"`
	ProjectTypeKey  string     `json:"projectTypeKey"`
	ProjectCategory *apiIDName `json:"projectCategory"`
	Lead            *apiUser   `json:"lead"`
	Archived        bool       `json:"archived"`
}

type apiIssueRef struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

type apiIssue struct {
	ID        string          `json:"id"`
	Key       string          `json:"key"`
	Fields    json.RawMessage `json:"fields"`
	Changelog *apiChangelog   `json:"changelog"`
}

type apiFields struct {
	Summary     string `json:"summary"`
	Description text   `json:"description"`
	IssueType   *struct {
		Name    string `json:"name"`
		Subtask bool   `json:"subtask"`
	} `json:"issuetype"`
	Status *struct {
		Name           string `json:"name"`
		StatusCategory *struct {
			Key string `json:"key"`
		} `json:"statusCategory"`
	} `json:"status"`
	Priority             *apiIDName    `json:"priority"`
	Resolution           *apiIDName    `json:"resolution"`
	ResolutionDate       jiraTime      `json:"resolutiondate"`
	Labels               []string      `json:"labels"`
	Components           []apiIDName   `json:"components"`
	FixVersions          []apiIDName   `json:"fixVersions"`
	Versions             []apiIDName   `json:"versions"`
	Assignee             *apiUser      `json:"assignee"`
	Reporter             *apiUser      `json:"reporter"`
	Creator              *apiUser      `json:"creator"`
	Parent               *apiIssueRef  `json:"parent"`
	Subtasks             []apiIssueRef `json:"subtasks"`
	IssueLinks           []apiLink     `json:"issuelinks"`
	DueDate              string        `json:"duedate"`
	TimeOriginalEstimate *int64        `json:"timeoriginalestimate"`
	TimeEstimate         *int64        `json:"timeestimate"`
	TimeSpent            *int64        `json:"timespent"`
	Project              *struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	} `json:"project"`
	Comment *apiCommentPage `json:"comment"`
	Created jiraTime        `json:"created"`
	Updated jiraTime        `json:"updated"`
}

type apiLink struct {
	ID   string `json:"id"`
	Type struct {
		Name    string `json:"name"`
		Inward  string `json:"inward"`
		Outward string `json:"outward"`
	} `json:"type"`
	InwardIssue  *apiIssueRef `json:"inwardIssue"`
	OutwardIssue *apiIssueRef `json:"outwardIssue"`
}

type apiChangelog struct {
	StartAt    int          `json:"startAt"`
	MaxResults int          `json:"maxResults"`
	Total      int          `json:"total"`
	Histories  []apiHistory `json:"histories"`
}

type apiHistory struct {
	ID      string   `json:"id"`
	Author  *apiUser `json:"author"`
	Created jiraTime `json:"created"`
	Items   []struct {
		Field      string `json:"field"`
		FieldType  string `json:"fieldtype"`
		FieldID    string `json:"fieldId"`
		From       string `json:"from"`
		FromString string `json:"fromString"`
		To         string `json:"to"`
		ToString   string `json:"toString"`
	} `json:"items"`
}

type apiCommentPage struct {
	StartAt    int          `json:"startAt"`
	MaxResults int          `json:"maxResults"`
	Total      int          `json:"total"`
	Comments   []apiComment `json:"comments"`
}

type apiComment struct {
	ID           string   `json:"id"`
	Author       *apiUser `json:"author"`
	UpdateAuthor *apiUser `json:"updateAuthor"`
	Body         text     `json:"body"`
	Created      jiraTime `json:"created"`
	Updated      jiraTime `json:"updated"`
	Visibility   *struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"visibility"`
	JSDPublic *bool `json:"jsdPublic"`
}

// ---- Jira's JSON → records ----

func (j *Jira) user(u *apiUser) *User {
	if u == nil {
		return nil
	}
	return &User{ID: userID(u), AccountID: u.AccountID, Key: u.Key, Username: u.Name, DisplayName: u.DisplayName,
		Email: u.EmailAddress, Active: u.Active, AccountType: u.AccountType, TimeZone: u.TimeZone}
}

func (j *Jira) browseURL(key string) string {
	return j.api.base.JoinPath("browse", key).String()
}

func (j *Jira) project(p *apiProject) Project {
	out := Project{ID: p.ID, Key: p.Key, Name: p.Name, Description: string(p.Description), ProjectType: p.ProjectTypeKey,
		Lead: j.user(p.Lead), Archived: p.Archived, URL: j.browseURL(p.Key)}
	if c := p.ProjectCategory; c != nil {
		out.Category = &IDName{ID: c.ID, Name: c.Name}
	}
	return out
}

func names(xs []apiIDName) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, x.Name)
	}
	return out
}

// decodedIssue is an issue read from a search: its fields decoded once.
type decodedIssue struct {
	raw     apiIssue
	f       apiFields
	custom  map[string]json.RawMessage
	updated time.Time
}

func decodeIssue(raw apiIssue) (decodedIssue, error) {
	d := decodedIssue{raw: raw}
	if len(raw.Fields) == 0 {
		return d, fmt.Errorf("issue %s: no fields in Jira's answer", raw.Key)
	}
	if err := json.Unmarshal(raw.Fields, &d.f); err != nil {
		return d, fmt.Errorf("issue %s: %w", raw.Key, err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw.Fields, &all); err != nil {
		return d, fmt.Errorf("issue %s: %w", raw.Key, err)
	}
	for k, v := range all {
		if strings.HasPrefix(k, "customfield_") && !bytes.Equal(v, []byte("null")) {
			if d.custom == nil {
				d.custom = map[string]json.RawMessage{}
			}
			d.custom[k] = v
		}
	}
	d.updated = d.f.Updated.Time
	if d.updated.IsZero() {
		return d, fmt.Errorf("issue %s: no updated time in Jira's answer", raw.Key)
	}
	return d, nil
}

// issue builds the record from a decoded issue and its whole changelog.
func (j *Jira) issue(d *decodedIssue, histories []apiHistory, fieldNames map[string]string) Issue {
	f := &d.f
	out := Issue{
		ID: d.raw.ID, Key: d.raw.Key, URL: j.browseURL(d.raw.Key),
		Summary: f.Summary, Description: string(f.Description),
		ResolvedAt: f.ResolutionDate.ptr(), Labels: f.Labels,
		Components: names(f.Components), FixVersions: names(f.FixVersions), AffectsVersions: names(f.Versions),
		Assignee: j.user(f.Assignee), Reporter: j.user(f.Reporter), Creator: j.user(f.Creator),
		DueDate: f.DueDate, OriginalEstimateSeconds: f.TimeOriginalEstimate,
		RemainingEstimateSeconds: f.TimeEstimate, TimeSpentSeconds: f.TimeSpent,
		CreatedAt: f.Created.Time, UpdatedAt: f.Updated.Time,
		Subtasks: []IssueRef{}, Links: []IssueLink{}, CustomFields: map[string]CustomField{}, Changelog: []History{},
	}
	if out.Labels == nil {
		out.Labels = []string{}
	}
	if f.Project != nil {
		out.ProjectID, out.ProjectKey = f.Project.ID, f.Project.Key
	}
	if t := f.IssueType; t != nil {
		out.Type, out.Subtask = t.Name, t.Subtask
	}
	if s := f.Status; s != nil {
		out.Status = s.Name
		if s.StatusCategory != nil {
			out.StatusCategory = s.StatusCategory.Key
		}
	}
	if f.Priority != nil {
		out.Priority = f.Priority.Name
	}
	if f.Resolution != nil {
		out.Resolution = f.Resolution.Name
	}
	if f.Parent != nil {
		out.Parent = &IssueRef{ID: f.Parent.ID, Key: f.Parent.Key}
	}
	for _, s := range f.Subtasks {
		out.Subtasks = append(out.Subtasks, IssueRef(s))
	}
	for _, l := range f.IssueLinks {
		switch {
		case l.OutwardIssue != nil:
			out.Links = append(out.Links, IssueLink{ID: l.ID, Type: l.Type.Name, Relation: l.Type.Outward, Direction: "outward",
				Issue: IssueRef{ID: l.OutwardIssue.ID, Key: l.OutwardIssue.Key}})
		case l.InwardIssue != nil:
			out.Links = append(out.Links, IssueLink{ID: l.ID, Type: l.Type.Name, Relation: l.Type.Inward, Direction: "inward",
				Issue: IssueRef{ID: l.InwardIssue.ID, Key: l.InwardIssue.Key}})
		}
	}
	if f.Comment != nil {
		out.CommentCount = max(f.Comment.Total, len(f.Comment.Comments))
	}
	for k, v := range d.custom {
		out.CustomFields[k] = CustomField{Name: fieldNames[k], Value: v}
	}
	hs := slices.Clone(histories)
	slices.SortStableFunc(hs, func(a, b apiHistory) int {
		if c := a.Created.Compare(b.Created.Time); c != 0 {
			return c
		}
		return compareNumeric(a.ID, b.ID)
	})
	for _, h := range hs {
		e := History{ID: h.ID, Author: j.user(h.Author), CreatedAt: h.Created.Time, Items: make([]ChangeItem, 0, len(h.Items))}
		for _, it := range h.Items {
			e.Items = append(e.Items, ChangeItem{Field: it.Field, FieldType: it.FieldType, FieldID: it.FieldID,
				From: it.From, FromString: it.FromString, To: it.To, ToString: it.ToString})
		}
		out.Changelog = append(out.Changelog, e)
	}
	return out
}

func (j *Jira) comment(c *apiComment, d *decodedIssue) Comment {
	out := Comment{ID: c.ID, IssueID: d.raw.ID, IssueKey: d.raw.Key, Author: j.user(c.Author), UpdateAuthor: j.user(c.UpdateAuthor),
		Body: string(c.Body), Public: c.JSDPublic, CreatedAt: c.Created.Time, UpdatedAt: c.Updated.Time}
	if d.f.Project != nil {
		out.ProjectKey = d.f.Project.Key
	}
	if v := c.Visibility; v != nil {
		out.Visibility = &Visibility{Type: v.Type, Value: v.Value}
	}
	return out
}

// compareNumeric orders Jira ids (decimal strings) as numbers.
func compareNumeric(a, b string) int {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}
