package model

import (
	"encoding/json"
	"fmt"

	"pgregory.net/rapid"
)

// Profiles is the read model of the event-ordering post: UserCreated and
// UserRenamed events of a user stream projected into a local cache of user
// names. Each event overwrites, so applying one twice in a row changes
// nothing; but order matters, so the model is ordered: each user's events
// must be applied in the order they were sent. It publishes nothing.
//
//   - UserCreated{name} marks the user created with that name.
//   - UserRenamed{name} sets the name.
type Profiles struct{}

// ProfileState is the projected state of one user.
type ProfileState struct {
	Created bool   `json:"created"`
	Name    string `json:"name"`
}

// Profiles message types.
const (
	UserCreated = "UserCreated"
	UserRenamed = "UserRenamed"
)

type namePayload struct {
	Name string `json:"name"`
}

// Name implements Model.
func (Profiles) Name() string { return "profiles" }

// Describe implements Model.
func (Profiles) Describe() string {
	return "user read model: UserCreated/UserRenamed overwrite a cached name; ordered per user, no outputs"
}

// Ordered implements Model: a user's events must be applied in send order.
func (Profiles) Ordered() bool { return true }

// Initial implements Model.
func (Profiles) Initial(string) State { return mustEncode(ProfileState{}) }

// Apply implements Model.
func (Profiles) Apply(s State, m Message) (State, Outputs, error) {
	var st ProfileState
	if err := json.Unmarshal(s, &st); err != nil {
		return nil, nil, fmt.Errorf("profiles: bad state %s: %w", s, err)
	}
	var p namePayload
	if err := json.Unmarshal(m.Payload, &p); err != nil || p.Name == "" {
		return nil, nil, fmt.Errorf("profiles: %s needs a name, got %s", m.Type, m.Payload)
	}
	switch m.Type {
	case UserCreated:
		st = ProfileState{Created: true, Name: p.Name}
	case UserRenamed:
		st.Name = p.Name
	default:
		return nil, nil, fmt.Errorf("profiles: unknown message type %q", m.Type)
	}
	ns, err := EncodeState(st)
	if err != nil {
		return nil, nil, err
	}
	return ns, nil, nil
}

// AlreadyApplied implements AppliedDetector: a UserCreated for a created
// user, or a UserRenamed to the current name, looks applied.
func (Profiles) AlreadyApplied(s State, m Message) (bool, error) {
	var st ProfileState
	if err := json.Unmarshal(s, &st); err != nil {
		return false, fmt.Errorf("profiles: bad state %s: %w", s, err)
	}
	var p namePayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return false, fmt.Errorf("profiles: bad payload of %s %s: %w", m.Type, m.Payload, err)
	}
	switch m.Type {
	case UserCreated:
		return st.Created, nil
	case UserRenamed:
		return st.Name == p.Name, nil
	}
	return false, nil
}

// Workload implements Model: per user (up to two), a UserCreated followed
// by renames, up to maxMessages in all, shrinking toward one UserCreated.
func (Profiles) Workload(maxMessages int) *rapid.Generator[Workload] {
	names := []string{"ann", "bob", "cy", "dee"}
	return rapid.Custom(func(t *rapid.T) Workload {
		n := rapid.IntRange(1, maxMessages).Draw(t, "messages")
		created := map[string]bool{}
		var w Workload
		for i := 0; i < n; i++ {
			user := fmt.Sprintf("u%d", rapid.IntRange(1, 2).Draw(t, "user"))
			name := names[rapid.IntRange(0, len(names)-1).Draw(t, "name")]
			typ := UserRenamed
			if !created[user] {
				typ, created[user] = UserCreated, true
			}
			w = append(w, Message{Aggregate: user, Type: typ, Payload: payload(namePayload{Name: name})})
		}
		return w.Number()
	})
}
