"""Overview: the image as the model sees it, its prediction and the model's facts."""

import streamlit as st

from dashboard.figures.common import image_figure, probability_figure
from dashboard.jobs import compute
from dashboard.state import current_image, current_model, model_card
from dashboard.glossary import plain
from dashboard.ui import guarded, show
from geometry.tasks import probabilities

clf = current_model()
img = current_image()

st.header("What the model sees")
plain("The image as the [[classifier|model]] receives it, and how sure the model is of each class.")
with guarded("classifying the image"):
    probs = compute(probabilities, img.tensor, what="the prediction", quick=True)[0]
    label = int(probs.argmax())
    left, right = st.columns([1, 2])
    with left:
        show(image_figure(img.tensor, f"Input {tuple(img.tensor.shape)}", clf.pixel_range), key="overview_image")
        st.caption(f"Source: {img.source}")
        if img.steps:
            st.caption("Conversion: " + "; ".join(img.steps))
    with right:
        st.metric("Predicted class", clf.class_names[label], f"p = {float(probs[label]):.3f}", delta_color="off")
        if img.label is not None:
            ok = img.label == label
            st.caption(f"True label: **{clf.class_names[img.label] if img.label < clf.num_classes else img.label}** "
                       f"({'correct' if ok else 'misclassified'})")
        show(probability_figure(probs, clf.class_names, top=min(5, clf.num_classes), title="Top-5 class probabilities"),
             key="overview_probs")
    if img.original is not None and img.steps:
        with st.expander("Before conversion"):
            show(image_figure(img.original, "Uploaded image (greyscale/RGB, [0, 1])"), key="overview_original")

st.subheader("Model")
card = model_card(clf)
st.write(clf.describe())
facts = {k: card[k] for k in ("architecture", "activation", "dataset", "recipe", "seed", "held_out_accuracy",
                              "attack", "robust_accuracy") if k in card}
if facts:
    st.markdown("\n".join(f"- **{k.replace('_', ' ')}**: {v}" for k, v in facts.items()))
if clf.piecewise_linear:
    st.info("This network is piecewise linear (ReLU / max-pooling): its exact Hessian is zero almost everywhere, "
            "so curvature is measured with finite differences of gradients at a scale.")
