//===- MoeEnums.td - moe dialect enumerations ------------*- tablegen -*-===//

#ifndef MOE_DIALECT_MOE_IR_MOEENUMS_TD
#define MOE_DIALECT_MOE_IR_MOEENUMS_TD

include "mlir/IR/EnumAttr.td"

class Moe_I32Enum<string name, string summary, list<I32EnumAttrCase> cases>
    : I32EnumAttr<name, summary, cases> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}

def Moe_RoutingPolicy : Moe_I32Enum<"RoutingPolicy", "how experts are selected", [
  I32EnumAttrCase<"TopK", 0, "top_k">,
  I32EnumAttrCase<"TopP", 1, "top_p">,
  I32EnumAttrCase<"GroupedTopK", 2, "grouped_top_k">,
  I32EnumAttrCase<"Sinkhorn", 3, "sinkhorn">,
  I32EnumAttrCase<"ExpertChoice", 4, "expert_choice">,
  I32EnumAttrCase<"Threshold", 5, "threshold">,
  I32EnumAttrCase<"SparseMixer", 6, "sparse_mixer">
]>;

def Moe_ScoreFunction : Moe_I32Enum<"ScoreFunction", "router score function", [
  I32EnumAttrCase<"Softmax", 0, "softmax">,
  I32EnumAttrCase<"Sigmoid", 1, "sigmoid">,
  I32EnumAttrCase<"SoftmaxSelected", 2, "softmax_selected">,
  I32EnumAttrCase<"Identity", 3, "identity">
]>;

def Moe_Normalization : Moe_I32Enum<"Normalization",
    "renormalisation of the selected gate weights", [
  I32EnumAttrCase<"None", 0, "none">,
  I32EnumAttrCase<"Selected", 1, "selected">
]>;

def Moe_TieBreak : Moe_I32Enum<"TieBreak", "order among equal scores", [
  I32EnumAttrCase<"LowerIndex", 0, "lower_index">,
  I32EnumAttrCase<"HigherIndex", 1, "higher_index">
]>;

def Moe_CapacityFormula : Moe_I32Enum<"CapacityFormula",
    "how a capacity factor becomes a per-expert capacity", [
  I32EnumAttrCase<"GShard", 0, "gshard">,
  I32EnumAttrCase<"Tutel", 1, "tutel">,
  I32EnumAttrCase<"Fixed", 2, "fixed">
]>;

def Moe_QueueOrder : Moe_I32Enum<"QueueOrder",
    "order in which (token, choice) pairs claim capacity", [
  I32EnumAttrCase<"Position", 0, "position">,
  I32EnumAttrCase<"ChoiceMajor", 1, "choice_major">,
  I32EnumAttrCase<"Score", 2, "score">
]>;

def Moe_DropPolicy : Moe_I32Enum<"DropPolicy",
    "what a dropped (token, choice) pair contributes", [
  I32EnumAttrCase<"Zero", 0, "zero">,
  I32EnumAttrCase<"PassThrough", 1, "pass_through">
]>;

def Moe_Activation : Moe_I32Enum<"Activation", "expert activation function", [
  I32EnumAttrCase<"SiLU", 0, "silu">,
  I32EnumAttrCase<"GELU", 1, "gelu">,
  I32EnumAttrCase<"GELUTanh", 2, "gelu_tanh">,
  I32EnumAttrCase<"ReLU", 3, "relu">,
  I32EnumAttrCase<"Identity", 4, "identity">
]>;

def Moe_FFNKind : Moe_I32Enum<"FFNKind", "expert feed-forward form", [
  I32EnumAttrCase<"MLP", 0, "mlp">,
  I32EnumAttrCase<"GLU", 1, "glu">
]>;

def Moe_GateUpLayout : Moe_I32Enum<"GateUpLayout",
    "how the gate and up projections of a GLU are stored", [
  I32EnumAttrCase<"Separate", 0, "separate">,
  I32EnumAttrCase<"Concatenated", 1, "concatenated">,
  I32EnumAttrCase<"Interleaved", 2, "interleaved">
]>;

def Moe_WeightLayout : Moe_I32Enum<"WeightLayout",
    "orientation of each stacked expert matrix", [
  I32EnumAttrCase<"InOut", 0, "in_out">,
  I32EnumAttrCase<"OutIn", 1, "out_in">
]>;

#endif // MOE_DIALECT_MOE_IR_MOEENUMS_TD
