package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzValueConstraints registers a variable of a random type with random
// constraints and a random initial value, then sets a second random value,
// and checks every outcome against fuzzModel, an independent statement of
// the rules of constraints.go:
//
//   - nothing panics, and every refusal is ErrInvalidArgument;
//   - compileConstraints and check accept exactly what the model accepts;
//   - an accepted value, once written, reads back Equal (with its
//     constraints), and a refused one leaves the variable as it was.
//
// The arguments: typ picks the type (mod 10, so 0 and 9 are invalid); the
// bits of set pick the constraints (see fuzzConstraints) and whether a
// value is given the wrong type; v1 and v2 are decoded by fuzzValue.
//
// Run it with: go test -run '^$' -fuzz '^FuzzValueConstraints$' -fuzztime 60s ./engine/
func FuzzValueConstraints(f *testing.F) {
	f.Add(uint8(TypeFloat), uint16(3), 0.0, 100.0, int64(0), int64(0), "", "", []byte(nil), le64(math.Float64bits(21.5)), le64(math.Float64bits(101)))
	f.Add(uint8(TypeInteger), uint16(12), 0.0, 0.0, int64(-5), int64(5), "", "", []byte(nil), le64(5), le64(6))
	f.Add(uint8(TypeString), uint16(48|64), 0.0, 0.0, int64(2), int64(5), "[a-z]+", "", []byte(nil), []byte("abc"), []byte("ab1"))
	f.Add(uint8(TypeChoice), uint16(128), 0.0, 0.0, int64(0), int64(0), "", "a,b,c", []byte(nil), []byte("a"), []byte("d"))
	f.Add(uint8(TypeModule), uint16(256), 0.0, 0.0, int64(0), int64(0), "", "resnet,vgg", []byte(nil), []byte("vgg"), []byte("bert"))
	f.Add(uint8(TypeEmbedding), uint16(512), 0.0, 0.0, int64(2), int64(0), "", "", []byte(nil), make([]byte, 8), make([]byte, 12))
	f.Add(uint8(TypeTensor), uint16(1024), 0.0, 0.0, int64(0), int64(0), "", "", []byte{2, 0xff}, []byte{8, 2, 2, 1, 0, 0}, []byte{8, 2, 2, 2, 0, 0})
	f.Add(uint8(TypeBoolean), uint16(1<<12), 0.0, 0.0, int64(0), int64(0), "", "", []byte(nil), []byte{1}, []byte{0})
	f.Fuzz(func(t *testing.T, typ uint8, set uint16, lo, hi float64, ilo, ihi int64, pattern, list string, shape, v1b, v2b []byte) {
		if len(v1b)+len(v2b)+len(pattern)+len(list) > 64<<10 {
			return // stay clear of the engine's size limits
		}
		T := Type(typ % 10)
		c := fuzzConstraints(set, lo, hi, ilo, ihi, pattern, list, shape)
		v1 := fuzzValue(T, v1b, set&(1<<11) != 0)
		v2 := fuzzValue(T, v2b, set&(1<<12) != 0)
		consOK := fuzzConsOK(T, c)

		if T.Valid() {
			cc, err := compileConstraints(T, c)
			if (err == nil) != consOK {
				t.Fatalf("compileConstraints(%s, %+v) = %v, model says ok=%v", T, c, err, consOK)
			}
			if err != nil && !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("compileConstraints: %v is not ErrInvalidArgument", err)
			}
			if err == nil {
				for _, v := range []Value{v1, v2} {
					err := cc.check(T, v)
					if want := fuzzAccepts(T, c, v); (err == nil) != want {
						t.Fatalf("check(%s %v) with %+v = %v, model says ok=%v", T, v, c, err, want)
					}
					if err != nil && !errors.Is(err, ErrInvalidArgument) {
						t.Fatalf("check: %v is not ErrInvalidArgument", err)
					}
				}
			}
		}

		ctx := context.Background()
		e := New(Config{})
		defer e.Close()
		if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"}); err != nil {
			t.Fatal(err)
		}
		_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "v", Type: T, Value: v1, Constraints: c})
		if want := consOK && fuzzAccepts(T, c, v1); (err == nil) != want {
			t.Fatalf("Register(%s %v, %+v) = %v, model says ok=%v", T, v1, c, err, want)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("Register: %v is not ErrInvalidArgument", err)
			}
			res, lerr := e.List(ctx, "s", "")
			if lerr != nil || len(res.Variables) != 0 || res.Revision != 0 {
				t.Fatalf("a refused Register changed the session: %+v, %v", res, lerr)
			}
			return
		}
		readBack(t, e, v1, 1, c)

		_, err = e.Set(ctx, SetRequest{Session: "s", Variable: "v", Value: v2})
		if want := fuzzAccepts(T, c, v2); (err == nil) != want {
			t.Fatalf("Set(%s %v) with %+v = %v, model says ok=%v", T, v2, c, err, want)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("Set: %v is not ErrInvalidArgument", err)
			}
			readBack(t, e, v1, 1, c)
			return
		}
		readBack(t, e, v2, 2, c)
	})
}

// readBack checks that variable "v" of session "s" holds want at version.
func readBack(t *testing.T, e *Engine, want Value, version int64, c Constraints) {
	t.Helper()
	got, err := e.Get(context.Background(), "s", "v")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Value.Equal(want) || !want.Equal(got.Value) || got.Version != version {
		t.Fatalf("read back %v at version %d, want %v at version %d", got.Value, got.Version, want, version)
	}
	if !reflect.DeepEqual(*got.Constraints, c) {
		t.Fatalf("constraints read back %+v, want %+v", got.Constraints, c)
	}
}

func le64(x uint64) []byte { return binary.LittleEndian.AppendUint64(nil, x) }

// fuzzDTypes are the dtypes fuzzValue picks from; "" and "complex64" are
// not accepted.
var fuzzDTypes = []string{"float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
	"uint8", "uint16", "uint32", "uint64", "bool", "", "complex64"}

// fuzzConstraints sets, for each bit of set: 0 min=lo, 1 max=hi,
// 2 min_integer=ilo, 3 max_integer=ihi, 4 min_length=ilo, 5
// max_length=ihi, 6 pattern, 7 choices (list split at ','), 8
// allowed_modules (the same), 9 dimensions=int8(ilo), 10 shape (one int8
// per byte, at most 8). Bits 11 and 12 give v1 and v2 the wrong type.
func fuzzConstraints(set uint16, lo, hi float64, ilo, ihi int64, pattern, list string, shape []byte) Constraints {
	var c Constraints
	bit := func(i int) bool { return set&(1<<i) != 0 }
	if bit(0) {
		c.Min = &lo
	}
	if bit(1) {
		c.Max = &hi
	}
	if bit(2) {
		c.MinInteger = &ilo
	}
	if bit(3) {
		c.MaxInteger = &ihi
	}
	if bit(4) {
		c.MinLength = &ilo
	}
	if bit(5) {
		c.MaxLength = &ihi
	}
	if bit(6) {
		c.Pattern = pattern
	}
	if bit(7) {
		c.Choices = strings.Split(list, ",")
	}
	if bit(8) {
		c.AllowedModules = strings.Split(list, ",")
	}
	if bit(9) {
		c.Dimensions = int(int8(ilo))
	}
	if bit(10) {
		for _, d := range shape[:min(len(shape), 8)] {
			c.Shape = append(c.Shape, int64(int8(d)))
		}
	}
	return c
}

// fuzzValue decodes a value of type t (of another type when wrong): floats
// and integers from 8 little-endian bytes, text as is, a boolean from the
// low bit, an embedding from 4 bytes per element, a tensor from a dtype
// index byte, a dimension count byte (mod 4), one int8 per dimension and
// the rest as data. An invalid type gives the zero Value.
func fuzzValue(t Type, b []byte, wrong bool) Value {
	if wrong {
		t = t%8 + 1
	}
	switch t {
	case TypeFloat:
		return Float(math.Float64frombits(binary.LittleEndian.Uint64(append(slices.Clone(b), make([]byte, 8)...))))
	case TypeInteger:
		return Integer(int64(binary.LittleEndian.Uint64(append(slices.Clone(b), make([]byte, 8)...))))
	case TypeString:
		return String(string(b))
	case TypeBoolean:
		return Boolean(len(b) > 0 && b[0]&1 == 1)
	case TypeChoice:
		return Choice(string(b))
	case TypeModule:
		return Module(string(b))
	case TypeEmbedding:
		var e []float32
		for i := 0; i+4 <= len(b) && len(e) < 64; i += 4 {
			e = append(e, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
		}
		return Embedding(e)
	case TypeTensor:
		var ten Tensor
		if len(b) > 0 {
			ten.DType = fuzzDTypes[int(b[0])%len(fuzzDTypes)]
			b = b[1:]
		}
		if len(b) > 0 {
			n := int(b[0] % 4)
			b = b[1:]
			for ; n > 0 && len(b) > 0; n-- {
				ten.Shape = append(ten.Shape, int64(int8(b[0])))
				b = b[1:]
			}
		}
		ten.Data = b
		return TensorOf(ten)
	}
	return Value{}
}

// fuzzConsOK is the model of compileConstraints (and of Register's type
// check): which constraint fits which type, and which are well formed.
func fuzzConsOK(t Type, c Constraints) bool {
	if !t.Valid() {
		return false
	}
	if (c.Min != nil || c.Max != nil) && t != TypeFloat ||
		(c.MinInteger != nil || c.MaxInteger != nil) && t != TypeInteger ||
		(c.MinLength != nil || c.MaxLength != nil || c.Pattern != "") && t != TypeString ||
		len(c.Choices) > 0 && t != TypeChoice ||
		len(c.AllowedModules) > 0 && t != TypeModule ||
		c.Dimensions != 0 && t != TypeEmbedding ||
		len(c.Shape) > 0 && t != TypeTensor {
		return false
	}
	if c.Min != nil && math.IsNaN(*c.Min) || c.Max != nil && math.IsNaN(*c.Max) ||
		c.Min != nil && c.Max != nil && *c.Min > *c.Max {
		return false
	}
	if c.MinInteger != nil && c.MaxInteger != nil && *c.MinInteger > *c.MaxInteger {
		return false
	}
	if c.MinLength != nil && *c.MinLength < 0 || c.MaxLength != nil && *c.MaxLength < 0 ||
		c.MinLength != nil && c.MaxLength != nil && *c.MinLength > *c.MaxLength {
		return false
	}
	if t == TypeChoice && len(c.Choices) == 0 || c.Dimensions < 0 {
		return false
	}
	for _, d := range c.Shape {
		if d < -1 {
			return false
		}
	}
	if c.Pattern != "" {
		// The pattern is an RE2 expression on its own: one that only
		// compiles once wrapped (an unbalanced ")|(") is not one.
		if _, err := regexp.Compile(c.Pattern); err != nil {
			return false
		}
	}
	return true
}

// fuzzAccepts is the model of check, for constraints fuzzConsOK accepts.
func fuzzAccepts(t Type, c Constraints, v Value) bool {
	if v.IsZero() || v.Type() != t {
		return false
	}
	switch t {
	case TypeFloat:
		f := v.Float()
		return (c.Min == nil || f >= *c.Min) && (c.Max == nil || f <= *c.Max)
	case TypeInteger:
		i := v.Integer()
		return (c.MinInteger == nil || i >= *c.MinInteger) && (c.MaxInteger == nil || i <= *c.MaxInteger)
	case TypeString:
		s := v.Str()
		if !utf8.ValidString(s) {
			return false
		}
		n := int64(len([]rune(s)))
		if c.MinLength != nil && n < *c.MinLength || c.MaxLength != nil && n > *c.MaxLength {
			return false
		}
		if c.Pattern != "" {
			// Whole-value match: the leftmost-longest match is all of s.
			re := regexp.MustCompile(c.Pattern)
			re.Longest()
			loc := re.FindStringIndex(s)
			return loc != nil && loc[0] == 0 && loc[1] == len(s)
		}
		return true
	case TypeChoice:
		return utf8.ValidString(v.Str()) && slices.Contains(c.Choices, v.Str())
	case TypeModule:
		return utf8.ValidString(v.Str()) && (len(c.AllowedModules) == 0 || slices.Contains(c.AllowedModules, v.Str()))
	case TypeBoolean:
		return true
	case TypeEmbedding:
		return c.Dimensions == 0 || v.EmbeddingLen() == c.Dimensions
	case TypeTensor:
		ten := v.Tensor()
		size := map[string]int64{"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
			"int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "bool": 1}[ten.DType]
		if size == 0 {
			return false
		}
		need := big.NewInt(size)
		for _, d := range ten.Shape {
			if d < 0 {
				return false
			}
			need.Mul(need, big.NewInt(d))
		}
		if !need.IsInt64() || need.Int64() != int64(len(ten.Data)) {
			return false
		}
		if len(c.Shape) > 0 {
			if len(c.Shape) != len(ten.Shape) {
				return false
			}
			for i, d := range c.Shape {
				if d != -1 && d != ten.Shape[i] {
					return false
				}
			}
		}
		return true
	}
	return false
}

// TestValueEqualEmbeddingBits: embedding elements compare by bits like
// floats do (found by FuzzValueConstraints: an embedding holding a NaN
// was not Equal to itself).
func TestValueEqualEmbeddingBits(t *testing.T) {
	nan := float32(math.NaN())
	if e := Embedding([]float32{1, nan}); !e.Equal(e) {
		t.Errorf("%v is not Equal to itself", e)
	}
	if Embedding([]float32{0}).Equal(Embedding([]float32{float32(math.Copysign(0, -1))})) {
		t.Errorf("[0] Equal [-0]; floats compare by bits")
	}
	if !Float(math.NaN()).Equal(Float(math.NaN())) {
		t.Errorf("NaN float is not Equal to itself")
	}
}

// TestPatternMustCompileAlone: a pattern that is only valid RE2 once
// wrapped in the anchoring group is refused (found while writing
// FuzzValueConstraints' model: "a)|(b" compiled to ^(?:a)|(b)$ and let
// "axyz" through a whole-value pattern).
func TestPatternMustCompileAlone(t *testing.T) {
	for _, p := range []string{"a)|(b", ")(", "a)(?:b"} {
		if _, err := compileConstraints(TypeString, Constraints{Pattern: p}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("pattern %q: %v, want ErrInvalidArgument", p, err)
		}
	}
	cc, err := compileConstraints(TypeString, Constraints{Pattern: "a|b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cc.check(TypeString, String("axyz")); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf(`"axyz" passes pattern "a|b": %v`, err)
	}
}
