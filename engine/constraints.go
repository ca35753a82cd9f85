package engine

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Constraints restrict a variable's values. Each field fits some types only;
// registering a variable with a constraint that does not fit its type is
// ErrInvalidArgument. Bounds are inclusive.
type Constraints struct {
	// float
	Min, Max *float64
	// integer
	MinInteger, MaxInteger *int64
	// string: length in characters (code points); Pattern is RE2 and must
	// match the whole value.
	MinLength, MaxLength *int64
	Pattern              string
	// choice: required, the allowed values.
	Choices []string
	// module: the allowed module names; empty allows any.
	AllowedModules []string
	// embedding: the exact number of elements; zero allows any.
	Dimensions int
	// tensor: the exact shape; -1 matches any size in that dimension.
	Shape []int64
}

// IsZero reports whether no constraint is set.
func (c Constraints) IsZero() bool {
	return c.Min == nil && c.Max == nil && c.MinInteger == nil && c.MaxInteger == nil &&
		c.MinLength == nil && c.MaxLength == nil && c.Pattern == "" && len(c.Choices) == 0 &&
		len(c.AllowedModules) == 0 && c.Dimensions == 0 && len(c.Shape) == 0
}

// compiledConstraints is Constraints checked against a type, with the
// pattern compiled once. Immutable after compile.
type compiledConstraints struct {
	Constraints
	pattern *regexp.Regexp
	wire    int  // constraintsWire, for the update size bound
	free    bool // no constraint is set: checkConstraints has nothing to do
}

// compileConstraints checks that every constraint set fits typ and is
// well-formed, and copies the slices so the caller cannot change them later.
func compileConstraints(typ Type, c Constraints) (*compiledConstraints, error) {
	bad := func(field string) error {
		return errorf(ErrInvalidArgument, "constraint %s does not apply to %s variables", field, typ)
	}
	type fit struct {
		set   bool
		field string
		types []Type
	}
	for _, f := range []fit{
		{c.Min != nil, "min", []Type{TypeFloat}},
		{c.Max != nil, "max", []Type{TypeFloat}},
		{c.MinInteger != nil, "min_integer", []Type{TypeInteger}},
		{c.MaxInteger != nil, "max_integer", []Type{TypeInteger}},
		{c.MinLength != nil, "min_length", []Type{TypeString}},
		{c.MaxLength != nil, "max_length", []Type{TypeString}},
		{c.Pattern != "", "pattern", []Type{TypeString}},
		{len(c.Choices) > 0, "choices", []Type{TypeChoice}},
		{len(c.AllowedModules) > 0, "allowed_modules", []Type{TypeModule}},
		{c.Dimensions != 0, "dimensions", []Type{TypeEmbedding}},
		{len(c.Shape) > 0, "shape", []Type{TypeTensor}},
	} {
		if f.set && !slices.Contains(f.types, typ) {
			return nil, bad(f.field)
		}
	}

	cc := &compiledConstraints{Constraints: Constraints{
		Min: clonePtr(c.Min), Max: clonePtr(c.Max),
		MinInteger: clonePtr(c.MinInteger), MaxInteger: clonePtr(c.MaxInteger),
		MinLength: clonePtr(c.MinLength), MaxLength: clonePtr(c.MaxLength),
		Pattern:        c.Pattern,
		Choices:        slices.Clone(c.Choices),
		AllowedModules: slices.Clone(c.AllowedModules),
		Dimensions:     c.Dimensions,
		Shape:          slices.Clone(c.Shape),
	}}
	switch {
	case c.Min != nil && (math.IsNaN(*c.Min) || c.Max != nil && *c.Min > *c.Max),
		c.Max != nil && math.IsNaN(*c.Max):
		return nil, errorf(ErrInvalidArgument, "constraint min/max: need min <= max and no NaN")
	case c.MinInteger != nil && c.MaxInteger != nil && *c.MinInteger > *c.MaxInteger:
		return nil, errorf(ErrInvalidArgument, "constraint min_integer %d > max_integer %d", *c.MinInteger, *c.MaxInteger)
	case c.MinLength != nil && *c.MinLength < 0, c.MaxLength != nil && *c.MaxLength < 0:
		return nil, errorf(ErrInvalidArgument, "constraint min_length/max_length must not be negative")
	case c.MinLength != nil && c.MaxLength != nil && *c.MinLength > *c.MaxLength:
		return nil, errorf(ErrInvalidArgument, "constraint min_length %d > max_length %d", *c.MinLength, *c.MaxLength)
	case typ == TypeChoice && len(c.Choices) == 0:
		return nil, errorf(ErrInvalidArgument, "choice variables need the choices constraint")
	case c.Dimensions < 0:
		return nil, errorf(ErrInvalidArgument, "constraint dimensions must not be negative")
	}
	for _, d := range c.Shape {
		if d < -1 {
			return nil, errorf(ErrInvalidArgument, "constraint shape: dimension %d (want >= 0, or -1 for any)", d)
		}
	}
	if c.Pattern != "" {
		// The pattern must compile on its own: wrapped, an unbalanced one
		// such as "a)|(b" would compile and escape the anchors.
		if _, err := regexp.Compile(c.Pattern); err != nil {
			return nil, errorf(ErrInvalidArgument, "constraint pattern %q: %v", c.Pattern, err)
		}
		re, err := regexp.Compile(`^(?:` + c.Pattern + `)$`)
		if err != nil {
			return nil, errorf(ErrInvalidArgument, "constraint pattern %q: %v", c.Pattern, err)
		}
		cc.pattern = re
	}
	cc.wire = constraintsWire(&cc.Constraints)
	// A choice always has something to check (a value among no choices
	// fails), though compiling refuses a choice variable without them.
	cc.free = cc.IsZero() && typ != TypeChoice
	return cc, nil
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// check reports why v is not acceptable for a variable of type typ with
// these constraints, or nil. cc may be nil (no constraints). Its cost grows
// with the value (UTF-8, length) and, for a pattern, with the pattern
// times the value: the loop never runs it (see offloop.go).
func (cc *compiledConstraints) check(typ Type, v Value) error {
	if err := checkKind(typ, v); err != nil {
		return err
	}
	if err := checkWellFormed(v); err != nil {
		return err
	}
	return cc.checkConstraints(typ, v)
}

// costly reports whether checkConstraints costs more than a comparison or
// two: a string length counts runes, a pattern runs RE2, both over the
// whole value.
func (cc *compiledConstraints) costly() bool {
	return cc != nil && (cc.pattern != nil || cc.MinLength != nil || cc.MaxLength != nil)
}

// checkKind reports a missing value or one of the wrong type.
func checkKind(typ Type, v Value) error {
	if v.typ == typ && typ != 0 {
		return nil
	}
	return kindError(typ, v)
}

// kindError is checkKind's error for a v that is missing or not of typ.
func kindError(typ Type, v Value) error {
	if v.IsZero() {
		return errorf(ErrInvalidArgument, "a %s value is required", typ)
	}
	if v.Type() != typ {
		return &WrongTypeError{Variable: typ, Value: v.Type(),
			err: errorf(ErrInvalidArgument, "wrong value type: variable is %s, value is %s", typ, v.Type())}
	}
	return nil
}

// checkConstraints checks a well-formed value of type typ against cc.
func (cc *compiledConstraints) checkConstraints(typ Type, v Value) error {
	if cc == nil || cc.free {
		return nil
	}
	c := &cc.Constraints
	// format starts with the constraint's name, which the error carries.
	violated := func(format string, args ...any) error {
		name, _, _ := strings.Cut(format, " ")
		return &ConstraintError{Constraint: name,
			err: errorf(ErrInvalidArgument, "value %s violates constraint "+format, append([]any{v.brief()}, args...)...)}
	}
	switch typ {
	case TypeFloat:
		f := v.Float()
		if c.Min != nil && !(f >= *c.Min) {
			return violated("min %v", *c.Min)
		}
		if c.Max != nil && !(f <= *c.Max) {
			return violated("max %v", *c.Max)
		}
	case TypeInteger:
		i := v.Integer()
		if c.MinInteger != nil && i < *c.MinInteger {
			return violated("min_integer %d", *c.MinInteger)
		}
		if c.MaxInteger != nil && i > *c.MaxInteger {
			return violated("max_integer %d", *c.MaxInteger)
		}
	case TypeString:
		n := int64(utf8.RuneCountInString(v.str))
		if c.MinLength != nil && n < *c.MinLength {
			return violated("min_length %d", *c.MinLength)
		}
		if c.MaxLength != nil && n > *c.MaxLength {
			return violated("max_length %d", *c.MaxLength)
		}
		if cc.pattern != nil && !cc.pattern.MatchString(v.str) {
			return violated("pattern %q", c.Pattern)
		}
	case TypeChoice:
		if !slices.Contains(c.Choices, v.str) {
			return violated("choices %q", c.Choices)
		}
	case TypeModule:
		if len(c.AllowedModules) > 0 && !slices.Contains(c.AllowedModules, v.str) {
			return violated("allowed_modules %q", c.AllowedModules)
		}
	case TypeEmbedding:
		if n := len(v.embs()); c.Dimensions != 0 && n != c.Dimensions {
			return violated("dimensions %d (it has %d)", c.Dimensions, n)
		}
	case TypeTensor:
		if len(c.Shape) > 0 && !shapeMatches(c.Shape, v.ten.Shape) {
			return violated("shape %v", c.Shape)
		}
	}
	return nil
}

// checkWellFormed checks what every value of its type must satisfy,
// constraints or not. Only strings and tensors have anything to check:
// a number passes without a call.
func checkWellFormed(v Value) error {
	switch v.typ {
	case TypeString, TypeChoice, TypeModule, TypeTensor:
		return checkFormed(v)
	}
	return nil
}

// checkFormed is checkWellFormed of a string or tensor value.
func checkFormed(v Value) error {
	switch v.Type() {
	case TypeString, TypeChoice, TypeModule:
		if !utf8.ValidString(v.str) {
			return errorf(ErrInvalidArgument, "%s value is not valid UTF-8", v.Type())
		}
	case TypeTensor:
		t := v.ten
		size, ok := dtypeSizes[t.DType]
		if !ok {
			return errorf(ErrInvalidArgument, "tensor dtype %q is not one of float16, bfloat16, float32, float64, int8..int64, uint8..uint64, bool", t.DType)
		}
		n := int64(1)
		for _, d := range t.Shape {
			if d < 0 {
				return errorf(ErrInvalidArgument, "tensor shape %v has a negative dimension", t.Shape)
			}
			if d > 0 && n > math.MaxInt64/d/size {
				return errorf(ErrInvalidArgument, "tensor shape %v is too large", t.Shape)
			}
			n *= d
		}
		if int64(len(t.Data)) != n*size {
			return errorf(ErrInvalidArgument, "tensor %s%v needs %d bytes of data, got %d", t.DType, t.Shape, n*size, len(t.Data))
		}
	}
	return nil
}

func shapeMatches(want, got []int64) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if want[i] != -1 && want[i] != got[i] {
			return false
		}
	}
	return true
}

// String formats set constraints for people, e.g. "min=0 max=100".
func (c Constraints) String() string {
	s := ""
	add := func(format string, args ...any) {
		if s != "" {
			s += " "
		}
		s += fmt.Sprintf(format, args...)
	}
	if c.Min != nil {
		add("min=%v", *c.Min)
	}
	if c.Max != nil {
		add("max=%v", *c.Max)
	}
	if c.MinInteger != nil {
		add("min=%d", *c.MinInteger)
	}
	if c.MaxInteger != nil {
		add("max=%d", *c.MaxInteger)
	}
	if c.MinLength != nil {
		add("min_length=%d", *c.MinLength)
	}
	if c.MaxLength != nil {
		add("max_length=%d", *c.MaxLength)
	}
	if c.Pattern != "" {
		add("pattern=%q", c.Pattern)
	}
	if len(c.Choices) > 0 {
		add("choices=%q", c.Choices)
	}
	if len(c.AllowedModules) > 0 {
		add("allowed_modules=%q", c.AllowedModules)
	}
	if c.Dimensions != 0 {
		add("dimensions=%d", c.Dimensions)
	}
	if len(c.Shape) > 0 {
		add("shape=%v", c.Shape)
	}
	return s
}
