package cli

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
)

// junitCase is one test case of a JUnit XML report: a run campaign, a
// matrix cell, or a checked file.
type junitCase struct {
	XMLName   xml.Name      `xml:"testcase"`
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Error     *junitFailure `xml:"error,omitempty"`
	Skipped   *struct{}     `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitSuite struct {
	XMLName  xml.Name    `xml:"testsuite"`
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Cases    []junitCase `xml:"testcase"`
}

// failed marks a case as a violation (failure) with its explanation.
func (c *junitCase) failed(message, text string) {
	c.Failure = &junitFailure{Message: message, Type: "violation", Text: text}
}

// inconclusive marks a case as an error: the verdict could not be reached.
func (c *junitCase) inconclusive(message string) {
	c.Error = &junitFailure{Message: message, Type: "inconclusive", Text: message}
}

// writeJUnit writes the cases as one test suite, atomically.
func writeJUnit(path, suite string, cases []junitCase) error {
	b, err := junitXML(suite, cases)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".junit-*")
	if err != nil {
		return fmt.Errorf("junit report: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("junit report: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("junit report: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("junit report: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// junitXML is the cases as one test suite, an XML document.
func junitXML(suite string, cases []junitCase) ([]byte, error) {
	s := junitSuite{Name: suite, Tests: len(cases), Cases: cases}
	for _, c := range cases {
		switch {
		case c.Failure != nil:
			s.Failures++
		case c.Error != nil:
			s.Errors++
		case c.Skipped != nil:
			s.Skipped++
		}
	}
	b, err := xml.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("junit report: %w", err)
	}
	return append(append([]byte(xml.Header), b...), '\n'), nil
}
