package model

import (
	"encoding/json"
	"fmt"

	"pgregory.net/rapid"
)

// Accounts is the model of Eventide's account component: deposits and
// withdrawals. Deposits are not idempotent (depositing 5 twice is 10), and
// the outcome of a withdrawal depends on the order of everything before it.
//
//   - Deposit{amount} adds to the balance and emits Deposited{amount, balance}.
//   - Withdraw{amount} subtracts from a sufficient balance and emits
//     Withdrawn{amount, balance}; otherwise it emits
//     WithdrawalRejected{amount, balance} and changes nothing.
type Accounts struct{}

// AccountState is the state of one account.
type AccountState struct {
	Balance int `json:"balance"`
}

// Accounts message and output types.
const (
	Deposit            = "Deposit"
	Withdraw           = "Withdraw"
	Deposited          = "Deposited"
	Withdrawn          = "Withdrawn"
	WithdrawalRejected = "WithdrawalRejected"
)

type amountPayload struct {
	Amount  int  `json:"amount"`
	Balance *int `json:"balance,omitempty"`
}

// Name implements Model.
func (Accounts) Name() string { return "accounts" }

// Describe implements Model.
func (Accounts) Describe() string {
	return "bank accounts: Deposit/Withdraw, withdrawals rejected on insufficient funds (outputs depend on order)"
}

// Ordered implements Model.
func (Accounts) Ordered() bool { return false }

// Initial implements Model.
func (Accounts) Initial(string) State { return mustEncode(AccountState{}) }

// Apply implements Model.
func (Accounts) Apply(s State, m Message) (State, Outputs, error) {
	var st AccountState
	if err := json.Unmarshal(s, &st); err != nil {
		return nil, nil, fmt.Errorf("accounts: bad state %s: %w", s, err)
	}
	var p amountPayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return nil, nil, fmt.Errorf("accounts: bad payload of %s %s: %w", m.Type, m.Payload, err)
	}
	if p.Amount <= 0 {
		return nil, nil, fmt.Errorf("accounts: %s needs a positive amount, got %s", m.Type, m.Payload)
	}
	var outs Outputs
	switch m.Type {
	case Deposit:
		st.Balance += p.Amount
		outs = append(outs, out(Deposited, amountPayload{Amount: p.Amount, Balance: &st.Balance}))
	case Withdraw:
		if st.Balance >= p.Amount {
			st.Balance -= p.Amount
			outs = append(outs, out(Withdrawn, amountPayload{Amount: p.Amount, Balance: &st.Balance}))
		} else {
			outs = append(outs, out(WithdrawalRejected, amountPayload{Amount: p.Amount, Balance: &st.Balance}))
		}
	default:
		return nil, nil, fmt.Errorf("accounts: unknown message type %q", m.Type)
	}
	ns, err := EncodeState(st)
	if err != nil {
		return nil, nil, err
	}
	return ns, outs, nil
}

// Workload implements Model: up to maxMessages deposits and withdrawals of
// 1 to 5 over up to two accounts, shrinking toward one deposit of 1.
func (Accounts) Workload(maxMessages int) *rapid.Generator[Workload] {
	msg := rapid.Custom(func(t *rapid.T) Message {
		agg := fmt.Sprintf("a%d", rapid.IntRange(1, 2).Draw(t, "account"))
		typ := Deposit
		if rapid.IntRange(0, 2).Draw(t, "kind") == 2 {
			typ = Withdraw
		}
		amount := rapid.IntRange(1, 5).Draw(t, "amount")
		return Message{Aggregate: agg, Type: typ, Payload: payload(amountPayload{Amount: amount})}
	})
	return rapid.Custom(func(t *rapid.T) Workload {
		return Workload(rapid.SliceOfN(msg, 1, maxMessages).Draw(t, "messages")).Number()
	})
}
